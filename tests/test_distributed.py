"""`forkctl ssft` and `forkctl gfpo` run unchanged as two distributed processes.

Launched with torchrun (what `accelerate launch --multi_gpu` runs underneath) and ACCELERATE_USE_CPU, so the
Trainer and `Accelerator` set up a two-process gloo group on CPU. (`accelerate launch --cpu` alone starts one
process; its multi-CPU mode goes through mpirun.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from forkctl import forks
from forkctl.tasks.synthetic import build_synthetic_model, write_trace_sets
from forkctl.records import read_json_lines
from forkctl.testing import capped_env, free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _launch(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "forkctl", *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=capped_env(1, ACCELERATE_USE_CPU="true", HF_HOME=str(tmp_path / "hf")))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("acc")
    base = build_synthetic_model(root / "base", num_forks=3, hidden_size=32, num_layers=1, num_heads=2,
                                 intermediate_size=64)
    return base, write_trace_sets(root / "train.jsonl", 8, seed=0)


def test_ssft_two_processes(synthetic: tuple[Path, Path], tmp_path: Path) -> None:
    base, data = synthetic
    out = tmp_path / "ssft"
    _launch(["ssft", "--model", str(base), "--trace-sets", str(data), "--out", str(out), "--num-forks", "3",
             "--batch-size", "4", "--max-steps", "2", "--match-prefix-tokens", "8", "--lr", "1e-3", "--quiet"],
            tmp_path)
    # Each rank matched its own questions: 2 per step per rank (batch 4 over 2 processes), logged per rank.
    logs = [read_json_lines(out / name) for name in ("matching.jsonl", "matching.rank1.jsonl")]
    for entries in logs:
        assert sorted(e["step"] for e in entries) == [0, 0, 1, 1]
        assert all(sorted(e["assignment"]) == [1, 2, 3] for e in entries)
    ranks = [{e["question_id"] for e in entries} for entries in logs]
    assert not ranks[0] & ranks[1]
    assert json.loads((out / "ssft_summary.json").read_text())["global_step"] == 2
    tok = AutoTokenizer.from_pretrained(out)
    assert forks.detect_num_forks(tok) == 3
    AutoModelForCausalLM.from_pretrained(out)


def test_gfpo_two_processes(synthetic: tuple[Path, Path], tmp_path: Path) -> None:
    base, _ = synthetic
    out = tmp_path / "gfpo"
    _launch(["gfpo", "--model", str(base), "--task", "synthetic-train", "--out", str(out), "--steps", "2",
             "--batch-size", "4", "--group-size", "2", "--max-new-tokens", "8", "--estimator", "exhaustive",
             "--quiet"], tmp_path)
    rows = read_json_lines(out / "gfpo_log.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    # Each process rolled out its half of the batch; the log covers both halves: 4 questions x 3 tokens x G = 2.
    assert all(r["chosen"] == {"1": 8, "2": 8, "3": 8} for r in rows)
    assert forks.detect_num_forks(AutoTokenizer.from_pretrained(out)) == 3

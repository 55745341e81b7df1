"""`forkctl eval` end to end on a tiny local model: generation, resume, re-scoring, policy forks, errors."""

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from forkctl.cli import app
from forkctl.records import Sample, read_records

runner = CliRunner()


def run_cli(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def test_eval_transformers_end_to_end_with_all_forks_and_resume(toy_model, questions_file, tmp_path):
    out = tmp_path / "ev"
    args = ["eval", "--model", toy_model, "--task", questions_file, "--n", "4", "--k", "1,2", "--k", "4",
            "--fork", "all", "--max-new-tokens", "8", "--out", out, "--quiet"]
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    samples = read_records(out / "samples.jsonl", Sample)
    assert len(samples) == 12
    assert [s.fork for s in samples if s.question_id == "q0"] == [1, 2, 3, 4]
    for s in samples:
        assert 1 <= s.num_tokens <= 8 and s.finish_reason in {"stop", "length"}
        assert s.extra["prompt_tokens"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["metrics"]) >= {"pass@1", "pass@2", "pass@4", "cons@1", "cons@2", "cons@4", "cons@native",
                                       "per_fork"}
    assert metrics["metrics"]["per_fork"]["3"]["n"] == 3
    cfg = metrics["config"]
    assert cfg["n"] == 4 and cfg["k"] == [1, 2, 4] and cfg["fork_mode"] == "all" and cfg["seed"] == 0
    assert "torch" in cfg["versions"] and "transformers" in cfg["versions"]

    # Resume: drop some samples, rerun: only those are generated, the rest is kept byte for byte.
    lines = (out / "samples.jsonl").read_text().splitlines()
    kept = lines[:7]
    (out / "samples.jsonl").write_text("\n".join(kept) + "\n" + lines[7][:20])  # plus a torn line
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    after = read_records(out / "samples.jsonl", Sample)
    assert sorted(s.key for s in after) == sorted(s.key for s in samples)
    first7 = {(json.loads(x)["question_id"], json.loads(x)["sample"]): json.loads(x)["text"] for x in kept}
    assert all(s.text == first7[s.key] for s in after if s.key in first7)

    # Growing n on the same out dir generates only the new samples.
    result = run_cli(*[a if a != "4" else "8" for a in args])
    assert result.exit_code == 0, result.output
    assert len(read_records(out / "samples.jsonl", Sample)) == 24

    # Other sampling settings into the same dir are refused.
    result = run_cli(*args[:-3], "--temperature", "0.1", "--out", out, "--quiet")
    assert result.exit_code == 2 and "temperature" in result.output


def test_rescoring_samples_gives_exact_metrics(questions_file, tmp_path):
    samples = tmp_path / "in.jsonl"
    rows = [
        # q0 (answer 0): two correct forms and a wrong one, a missing answer
        {"question_id": "q0", "sample": 0, "fork": 1, "text": "thus \\boxed{0}"},
        {"question_id": "q0", "sample": 1, "fork": 2, "text": "\\boxed{1}"},
        {"question_id": "q0", "sample": 2, "fork": 1, "text": "\\boxed{0.0}"},
        {"question_id": "q0", "sample": 3, "fork": 2, "text": "nothing"},
        # q1 (answer 2): wrong majority
        {"question_id": "q1", "sample": 0, "fork": 1, "text": "\\boxed{3}"},
        {"question_id": "q1", "sample": 1, "fork": 2, "text": "\\boxed{3}"},
        {"question_id": "q1", "sample": 2, "fork": 1, "text": "\\boxed{2}"},
        {"question_id": "q1", "sample": 3, "fork": 2, "text": "\\boxed{\\frac{4}{2}}"},
    ]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "rescored"
    result = run_cli("eval", "--samples", samples, "--task", questions_file, "--n", "4", "--k", "1,4",
                     "--fork", "all", "--out", out)
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    assert m["pass@1"] == pytest.approx((2 / 4 + 2 / 4) / 2)
    assert m["pass@4"] == pytest.approx(1.0)
    assert m["cons@1"] == pytest.approx(0.5)  # q0 first correct, q1 first wrong
    # q0: {0,0.0} x2 vs {1} vs none -> correct; q1: {3,3} vs {2, 4/2} tie -> first seen (3) -> wrong
    assert m["cons@4"] == pytest.approx(0.5)
    # native groups: q0 {s0 f1=0, s1 f2=1} tie -> 0 correct; {s2=0.0, s3=none} tie -> 0.0 correct => 1
    #                q1 {3, 3} wrong; {2, 4/2} correct => 0.5
    assert m["cons@native"] == pytest.approx(0.75)
    assert m["per_fork"]["1"] == {"n": 4, "accuracy": 0.75}
    rescored = read_records(out / "samples.jsonl", Sample)
    assert [s.answer for s in rescored[:4]] == ["0", "1", "0.0", None]
    assert [s.correct for s in rescored[4:]] == [False, False, True, True]


@pytest.mark.parametrize("extra,message", [
    (["--task", "no_such_bench"], "unknown task 'no_such_bench'"),
    (["--n", "2", "--k", "4"], "--k 4 is larger than --n 2"),
    (["--k", "x"], "--k: expected an integer"),
    (["--fork", "think9", "--max-new-tokens", "2"], "the model has 4 forking tokens"),
])
def test_bad_input_gives_one_line_error_and_exit_2(toy_model, questions_file, tmp_path, extra, message):
    args = ["eval", "--model", toy_model, "--task", questions_file, "--out", tmp_path / "e", "--quiet", *extra]
    result = run_cli(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_malformed_samples_file_names_line_and_field(questions_file, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": "q0", "sample": 0, "fork": 1, "text": "x"}\n'
                   '{"question_id": "q0", "sample": "one", "fork": 1, "text": "x"}\n')
    result = run_cli("eval", "--samples", bad, "--task", questions_file, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "bad.jsonl:2: field 'sample': expected integer, got string" in result.output


def test_yaml_config_with_cli_override_and_unknown_keys(toy_model, questions_file, tmp_path):
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"model: {toy_model}\nbenchmark: {questions_file}\nn: 2\nk: [1, 2]\nmax_new_tokens: 4\n"
                   f"fork: think2\nlimit: 1\n")
    result = run_cli("eval", "--config", cfg, "--fork", "think3", "--out", tmp_path / "o", "--quiet")
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["config"]["fork"] == "think3" and m["config"]["n"] == 2 and m["metrics"]["num_samples"] == 2
    cfg.write_text("model: x\nbogus_option: 1\n")
    result = run_cli("eval", "--config", cfg, "--out", tmp_path / "o2")
    assert result.exit_code == 2 and "unknown option 'bogus_option'" in result.output


def test_policy_mode_records_the_token_the_model_chooses(tmp_path, questions_file):
    """Make <think3> the model's clear choice at the fork position; eval must record fork=3 and strip it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forkctl import forks
    from forkctl.toy import build_toy_model

    path = build_toy_model(tmp_path / "m", num_forks=4, tie_embeddings=False)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    fmt = forks.resolve_fork_format(path, tok)
    think3 = forks.fork_token_ids(tok, 4)[2]
    with torch.no_grad():
        for i in range(3):
            prompt = forks.policy_prompt(tok, f"What is {i} + {i}?", fmt)
            ids = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]])
            h = model.model(ids).last_hidden_state[0, -1]
            model.lm_head.weight[think3] += 200 * h / h.norm() ** 2
    model.save_pretrained(path)
    out = tmp_path / "policy"
    result = run_cli("eval", "--model", path, "--task", questions_file, "--n", "2", "--fork", "policy",
                     "--max-new-tokens", "6", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    samples = read_records(out / "samples.jsonl", Sample)
    assert [s.fork for s in samples] == [3] * 6
    assert all("<think" not in s.text for s in samples)
    per_fork = json.loads((out / "metrics.json").read_text())["metrics"]["per_fork"]
    assert per_fork == {"3": {"n": 6, "accuracy": 0.0}}


def test_console_script_help_and_exit_code(tmp_path):
    result = subprocess.run([sys.executable, "-m", "forkctl", "eval", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for option in ("--model", "--task", "--backend", "--n", "--k", "--fork", "--num-forks", "--temperature",
                   "--top-p", "--max-new-tokens", "--seed", "--out", "--samples"):
        assert option in result.stdout
    result = subprocess.run([sys.executable, "-m", "forkctl", "eval", "--model", "x", "--task", "nope",
                             "--out", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------------
# Reruns never mix settings (a fingerprint beside the output)


def test_rebuilt_model_at_the_same_path_is_refused_then_overwrite_starts_again(questions_file, tmp_path):
    from forkctl.toy import build_toy_model

    model = build_toy_model(tmp_path / "m", num_forks=4, hidden_size=32, num_layers=1)
    out = tmp_path / "ev"
    args = ["eval", "--model", model, "--task", questions_file, "--n", "4", "--fork", "all", "--max-new-tokens", "3",
            "--out", out, "--quiet"]
    assert run_cli(*args).exit_code == 0
    build_toy_model(tmp_path / "m", num_forks=2, hidden_size=32, num_layers=1)  # same path, another model
    result = run_cli(*args)
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "model_identity changed" in result.output and "--overwrite" in result.output
    assert {s.fork for s in read_records(out / "samples.jsonl", Sample)} == {1, 2, 3, 4}  # nothing lost
    result = run_cli(*args, "--overwrite")
    assert result.exit_code == 0, result.output
    assert {s.fork for s in read_records(out / "samples.jsonl", Sample)} == {1, 2}


def test_a_smaller_n_scores_the_first_n_samples_and_says_so(toy_model, questions_file, tmp_path):
    out = tmp_path / "ev"
    base = ["eval", "--model", toy_model, "--task", questions_file, "--fork", "all", "--max-new-tokens", "3",
            "--out", out, "--quiet"]
    assert run_cli(*base, "--n", "4").exit_code == 0
    result = run_cli(*base, "--n", "2")
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["config"]["n"] == 2 and m["config"]["scored_samples"] == 6 and m["metrics"]["num_samples"] == 6
    assert sum(row["n"] for row in m["metrics"]["per_fork"].values()) == 6
    assert set(m["metrics"]["per_fork"]) == {"1", "2"}  # samples 0, 1 of each question use <think1>, <think2>
    assert len(read_records(out / "samples.jsonl", Sample)) == 12  # the stored samples stay


def test_an_eval_dir_from_another_tool_is_not_mixed(toy_model, questions_file, tmp_path):
    out = tmp_path / "ev"
    out.mkdir()
    (out / "samples.jsonl").write_text(json.dumps({"question_id": "q0", "sample": 0, "fork": None, "text": "x"}) + "\n")
    result = run_cli("eval", "--model", toy_model, "--task", questions_file, "--out", out, "--quiet",
                     "--max-new-tokens", "2")
    assert result.exit_code == 2 and "without a recorded fingerprint" in result.output


@pytest.mark.parametrize("name", ["runs/nope", "ABSOLUTE"])
def test_a_missing_model_path_is_one_line_before_any_hub_call(name, questions_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    model = str(tmp_path / "nope") if name == "ABSOLUTE" else name
    for stage in (["eval", "--task", str(questions_file)], ["ssft", "--trace-sets", "d.jsonl"],
                  ["gfpo", "--task", str(questions_file)]):
        result = subprocess.run([sys.executable, "-m", "forkctl", *stage, "--model", model], capture_output=True,
                                text=True, timeout=120, env={**__import__("os").environ, "HF_HUB_OFFLINE": "0"})
        assert result.returncode == 2, result.stderr
        assert result.stderr == f"error: --model {model}: no such model folder (and not a Hugging Face Hub id " \
                                f"such as Qwen/Qwen2.5-7B-Instruct)\n"


def test_math_tasks_default_to_the_reference_prompt_and_take_a_template(toy_model, questions_file, tmp_path):
    from forkctl.tasks.math import MATH_PROMPT

    base = ["eval", "--model", toy_model, "--task", questions_file, "--max-new-tokens", "1", "--quiet"]
    assert run_cli(*base, "--out", tmp_path / "a").exit_code == 0
    first = json.loads((tmp_path / "a" / "metrics.json").read_text())["config"]["first_prompt"]
    assert first == MATH_PROMPT.replace("{problem}", "What is 0 + 0?")  # lighteval's MATH_QUERY_TEMPLATE wording
    assert first.startswith("Solve the following math problem efficiently and clearly.")
    assert run_cli(*base, "--out", tmp_path / "b", "--prompt-template", "Q: {problem} A:").exit_code == 0
    first = json.loads((tmp_path / "b" / "metrics.json").read_text())["config"]["first_prompt"]
    assert first == "Q: What is 0 + 0? A:"

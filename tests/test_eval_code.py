"""`forkctl eval` on code questions: LiveCodeBench's prompt, programs run by the grader, per-test verdicts in each
sample, pass@k; `--samples` re-scoring re-executes; the grader mode and the data's lack of private tests are
recorded."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from forkctl.cli import app
from forkctl.records import Sample, read_records
from tests.code_cases import DAYS_MAIN_GUARD, DAYS_WRONG, SECOND_LARGEST, load_sample

runner = CliRunner()


def _questions(tmp_path):
    rows = load_sample()
    path = tmp_path / "code.jsonl"
    path.write_text("".join(json.dumps(rows[i]) + "\n" for i in ("lcb-v5-000", "lcb-v5-001")))
    return path


def _fenced(code: str) -> str:
    return f"Here is my solution.\n```python\n{code.strip()}\n```\n"


def test_eval_generates_code_samples_with_verdicts(toy_model, tmp_path):
    questions = _questions(tmp_path)
    out = tmp_path / "ev"
    result = runner.invoke(app, ["eval", "--model", str(toy_model), "--task", str(questions), "--n", "2",
                                 "--max-new-tokens", "4", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "public tests only" in result.output
    samples = read_records(out / "samples.jsonl", Sample)
    assert len(samples) == 4 and all(s.correct is False and "verdicts" in s.extra for s in samples)
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert config["first_prompt"].startswith("### Question:\n") and "### Answer:" in config["first_prompt"]
    assert config["task_source"]["grader"] == "official" and config["task_source"]["private_tests"] is False


def test_rescoring_runs_the_programs(tmp_path):
    questions = _questions(tmp_path)
    rows = [("lcb-v5-000", 0, SECOND_LARGEST), ("lcb-v5-000", 1, DAYS_WRONG),
            ("lcb-v5-001", 0, DAYS_MAIN_GUARD), ("lcb-v5-001", 1, DAYS_WRONG)]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"question_id": q, "sample": j, "fork": None, "text": _fenced(code)}) + "\n"
                               for q, j, code in rows))
    out = tmp_path / "rescored"
    result = runner.invoke(app, ["eval", "--samples", str(samples), "--task", str(questions), "--n", "2",
                                 "--k", "1,2", "--out", str(out), "--code-grader", "fixed"])
    assert result.exit_code == 0, result.output
    scored = {s.key: s for s in read_records(out / "samples.jsonl", Sample)}
    assert scored[("lcb-v5-000", 0)].correct and scored[("lcb-v5-001", 0)].correct
    assert not scored[("lcb-v5-000", 1)].correct  # DAYS_WRONG on the second-largest problem: wrong answer
    assert scored[("lcb-v5-000", 1)].extra["verdicts"][0] in ("wrong_answer", "runtime_error")
    m = json.loads((out / "metrics.json").read_text())
    assert m["metrics"]["pass@1"] == 0.5 and m["metrics"]["pass@2"] == 1.0
    assert m["config"]["task_source"]["grader"] == "fixed"

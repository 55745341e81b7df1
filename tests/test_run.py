"""`forkctl run`: a reduced toy pipeline end to end (teachers served by `run`, collect, filter, ssft, eval,
inspect), skipping unchanged stages, rerunning a changed one and what follows it, resuming a killed stage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forkctl.cli import app

PIPELINE = """
run_dir: {run_dir}
stages:
  base: {{stage: synthetic-data, questions: 1, model_out: "${{run_dir}}/base", num_forks: 3, hidden_size: 32,
         num_layers: 1}}
  teachers: {{stage: synthetic-teachers}}
  collect: {{task: synthetic-train, teachers: "${{teachers}}", limit: 12}}
  filter: {{traces: "${{collect}}", task: synthetic-train, max_traces: 3}}
  ssft: {{model: "${{base.model_out}}", trace_sets: "${{filter}}", num_forks: 3, match_prefix_tokens: 8, lr: 1e-3,
         batch_size: 4, max_steps: {ssft_steps}, save_steps: 5}}
  eval_ssft: {{stage: eval, model: "${{ssft}}", task: synthetic, fork: all, n: 3, limit: 3, max_new_tokens: 8}}
  report: {{stage: inspect, runs: ["${{eval_ssft}}", "${{ssft}}"]}}
"""


def _pipeline(tmp_path: Path, ssft_steps: int = 3) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(PIPELINE.format(run_dir=tmp_path / "run", ssft_steps=ssft_steps))
    return path


def _run(*args: str):
    result = CliRunner().invoke(app, ["run", *map(str, args), "--quiet"])
    assert result.exit_code == 0, result.output
    return result.output


def _actions(output: str) -> dict[str, str]:
    """stage -> 'skipped' / 'running' / 'resuming' from the progress lines."""
    out = {}
    for line in output.splitlines():
        if line.startswith("[") and "): " in line and " done in " not in line:
            name = line.split("] ", 1)[1].split(" (", 1)[0]
            out[name] = line.split("): ", 1)[1].split(" ", 1)[0].rstrip(",")
    return out


@pytest.mark.slow
def test_pipeline_runs_skips_and_reruns_what_changed(tmp_path):
    pipeline = _pipeline(tmp_path)
    first = _run(pipeline)
    assert set(_actions(first).values()) == {"running"}
    assert "source by token" in first and "per forking token" in first  # inspect's tables close the run
    run_dir = tmp_path / "run"
    assert len((run_dir / "collect.jsonl").read_text().splitlines()) == 36  # 12 questions x 3 teachers
    assert json.loads((run_dir / "eval_ssft" / "metrics.json").read_text())["metrics"]["num_samples"] == 9

    again = _actions(_run(pipeline))
    assert again == {"base": "skipped", "teachers": "skipped", "collect": "skipped", "filter": "skipped",
                     "ssft": "skipped", "eval_ssft": "skipped", "report": "running"}

    changed = _run(pipeline, "--set", "ssft.lr=2e-3")
    assert "changed: lr 0.001 -> 0.002" in changed
    assert _actions(changed) == {**again, "ssft": "running", "eval_ssft": "running"}
    # the changed setting is now the completed one
    assert _actions(_run(pipeline, "--set", "ssft.lr=2e-3"))["ssft"] == "skipped"

    dry = CliRunner().invoke(app, ["run", str(pipeline), "--dry-run", "--force", "filter"])
    assert dry.exit_code == 0 and "forced (--force)" in dry.output
    assert json.loads((run_dir / ".forkctl" / "filter.json").read_text())["status"] == "done"  # nothing ran


@pytest.mark.slow
def test_a_killed_run_resumes_the_interrupted_stage_and_skips_completed_ones(tmp_path):
    pipeline = _pipeline(tmp_path, ssft_steps=150)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "forkctl", "run", str(pipeline), "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    out = tmp_path / "run" / "ssft"
    deadline = time.monotonic() + 600
    while not list(out.glob("checkpoint-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # wait until ssft has saved a checkpoint, however slow the machine
    assert proc.poll() is None, "the pipeline ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    state = json.loads((tmp_path / "run" / ".forkctl" / "ssft.json").read_text())
    assert state["status"] == "running"
    saved = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))

    output = _run(pipeline)
    actions = _actions(output)
    assert actions["collect"] == actions["filter"] == actions["base"] == "skipped"
    assert actions["ssft"] == "resuming" and actions["eval_ssft"] == "running"
    summary = json.loads((out / "ssft_summary.json").read_text())
    assert summary["global_step"] == 150
    log_steps = [json.loads(line)["step"] for line in (out / "matching.jsonl").read_text().splitlines()]
    assert log_steps.count(saved + 1) == len([s for s in log_steps if s == 1])  # no step logged twice


def test_pipeline_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run_dir: r\nstages:\n  a: {stage: nope}\n")
    result = CliRunner().invoke(app, ["run", str(bad)])
    assert result.exit_code == 2 and "unknown kind 'nope'" in result.output and result.output.count("\n") == 1
    bad.write_text("run_dir: r\nstages:\n  filter: {traces: '${collect}', task: synthetic}\n")
    result = CliRunner().invoke(app, ["run", str(bad), "--dry-run"])
    assert result.exit_code == 2 and "${collect} refers to no earlier stage" in result.output
    result = CliRunner().invoke(app, ["run", str(bad), "--set", "nostage.x=1"])
    assert result.exit_code == 2 and "no stage 'nostage'" in result.output

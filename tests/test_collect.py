"""``forkctl collect`` against real HTTP servers on 127.0.0.1: a fault-injecting one and ``transformers serve``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from forkctl.tasks.math import MATH_PROMPT as DEFAULT_PROMPT
from forkctl.collect import CollectConfig, NothingCollected, RateLimiter, _retry_after, run_collect
from forkctl.config import ConfigError
from forkctl.records import TeacherResponse, read_records
from forkctl.teachers import load_teachers, traces_config_path
from forkctl.testing import free_port, write_arithmetic_questions

sys.path.insert(0, str(Path(__file__).parent))
from fault_server import FaultServer, default_answer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def expected_answer(problem: str) -> str:
    """The fault server's answer: derived from the user message it receives (the prompt template applied)."""
    return default_answer(DEFAULT_PROMPT.replace("{problem}", problem))


@pytest.fixture(scope="module")
def server():
    s = FaultServer(retry_after=0.3).start()
    yield s
    s.stop()


@pytest.fixture()
def questions(tmp_path: Path) -> Path:
    return write_arithmetic_questions(tmp_path / "questions.jsonl", 6)


def _teachers(tmp_path: Path, server: FaultServer, specs: list[dict[str, Any]], name: str = "teachers.yaml") -> Path:
    items = [{"base_url": server.base_url, **s} for s in specs]
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"teachers": items}))
    return path


def _collect(tmp_path: Path, questions: Path, teachers: Path, **kw: Any):
    kw.setdefault("out", str(tmp_path / "traces.jsonl"))
    cfg = CollectConfig(task=str(questions), teachers=str(teachers), backoff=0.02, max_backoff=0.2, **kw)
    cfg.quiet = True
    return run_collect(cfg)


def _records(result_or_path: Any) -> list[TeacherResponse]:
    path = getattr(result_or_path, "out_path", result_or_path)
    return read_records(path, TeacherResponse)


def _assert_once(records: list[TeacherResponse], expected: set[tuple[str, str, int]]) -> None:
    counts = Counter(r.key for r in records)
    assert set(counts) == expected
    assert max(counts.values()) == 1, [k for k, c in counts.items() if c > 1]


# --------------------------------------------------------------------------------------------------
# Teachers file


def test_teachers_file_validation(tmp_path: Path, server: FaultServer) -> None:
    good = _teachers(tmp_path, server, [{"name": "a", "model": "m", "api_key_env": "A_KEY", "samples": 2,
                                         "concurrency": 4, "rpm": 60, "price": {"input_per_mtok": 1},
                                         "params": {"temperature": 0.6, "reasoning_effort": "high",
                                                    "extra_body": {"top_k": 20}}}])
    (t,) = load_teachers(good)
    assert (t.name, t.samples, t.rpm, t.params["reasoning_effort"]) == ("a", 2, 60, "high")
    cases = [({"name": "a", "model": "m", "colour": "red"}, r"teachers\[0\] \(a\): unknown key\(s\) colour"),
             ({"name": "a", "model": "m", "params": {"temprature": 1}}, "params: unknown key"),
             ({"name": "a", "model": "m", "api_key_env": "sk-abc123"}, "NAME of an environment variable"),
             ({"name": "a"}, "'model' is required"),
             ({"name": "a", "model": "m", "price": {"input": 1}}, "price: unknown key")]
    for spec, match in cases:
        with pytest.raises(ConfigError, match=match):
            load_teachers(_teachers(tmp_path, server, [spec], "bad.yaml"))
    with pytest.raises(ConfigError, match="duplicate name"):
        load_teachers(_teachers(tmp_path, server, [{"name": "a", "model": "m"}, {"name": "a", "model": "n"}], "d.yaml"))


def test_example_teachers_file_parses() -> None:
    teachers = load_teachers(REPO / "examples" / "teachers.yaml")
    assert len(teachers) == 4
    assert len({t.base_url for t in teachers}) >= 2  # two providers
    efforts = Counter(t.model for t in teachers if t.params.get("reasoning_effort"))
    assert max(efforts.values()) == 2  # one model at two reasoning efforts
    assert all(t.api_key_env for t in teachers)


def test_retry_after_parsing() -> None:
    assert _retry_after({"retry-after": "2"}) == 2.0
    assert _retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert _retry_after({}) is None
    assert 0 <= _retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) < 1  # a past date: now


# --------------------------------------------------------------------------------------------------
# Faults


def test_faults_are_retried_and_samples_completed(tmp_path: Path, server: FaultServer, questions: Path) -> None:
    specs = [{"name": "honours-n", "model": "ok-n"},
             {"name": "ignores-n", "model": "ignore-n"},
             {"name": "r429", "model": "ignore-n+429-first", "samples": 3},
             {"name": "r500", "model": "500-first"},
             {"name": "slow", "model": "slow-first+slow:3", "timeout": 0.5},
             {"name": "malformed", "model": "malformed-first"},
             {"name": "empty", "model": "empty-first"},
             {"name": "reasoner", "model": "reasoning"}]
    result = _collect(tmp_path, questions, _teachers(tmp_path, server, specs), samples=2, limit=3)
    records = _records(result)
    expected = {(f"q{i}", s["name"], k) for i in range(3) for s in specs for k in range(s.get("samples", 2))}
    _assert_once(records, expected)
    assert all(r.ok and r.finish_reason == "stop" for r in records)
    for r in records:
        assert r.answer == expected_answer(f"What is {r.question_id[1:]} + {r.question_id[1:]}?"), r
        assert r.usage["completion_tokens"] > 0 and r.latency_s is not None
    stats = result.stats
    assert stats["honours-n"].retried == 0 and stats["ignores-n"].retried == 0
    for name in ("r429", "r500", "slow", "malformed", "empty"):
        assert stats[name].retried == 3, name  # one retry per question
        assert stats[name].failed == 0
    # Servers that ignore n: one request per sample; ones that honour it: one per question.
    assert Counter(r["model"] for r in server.requests if r["status"] == 200)["ok-n"] >= 3
    reasoner = [r for r in records if r.teacher == "reasoner"]
    assert all(r.reasoning and r.text.startswith("The answer is") for r in reasoner)
    assert all(r.extra["attempts"] == 2 for r in records if r.teacher == "r500")
    # Retry-After: the retry came no sooner than the server asked.
    times = [r["time"] for r in server.requests if r["model"] == "ignore-n+429-first"]
    statuses = [r["status"] for r in server.requests if r["model"] == "ignore-n+429-first"]
    first_ok = statuses.index(200)
    assert times[first_ok] - times[0] >= 0.3 - 0.02
    assert traces_config_path(result.out_path).exists()


def test_failures_recorded_then_retried_on_request(tmp_path: Path, server: FaultServer, questions: Path) -> None:
    specs = [{"name": "down", "model": "500-always", "samples": 1}, {"name": "up", "model": "ok-f"}]
    teachers = _teachers(tmp_path, server, specs)
    result = _collect(tmp_path, questions, teachers, limit=2, max_retries=2)
    records = _records(result)
    failed = [r for r in records if not r.ok]
    assert len(failed) == 2 and all(r.teacher == "down" and "HTTP 500" in r.error for r in failed)
    assert all(r.text is None and r.extra["attempts"] == 3 for r in failed)
    assert result.stats["down"].retried == 4 and result.stats["up"].ok == 2
    # A plain rerun skips failed keys too; --retry-failed asks again and still records each key once.
    again = _collect(tmp_path, questions, teachers, limit=2, max_retries=2)
    assert again.stats["down"].skipped == 2 and again.stats["down"].failed == 0
    with pytest.raises(NothingCollected) as caught:  # this run asked only "down" again, and it failed again
        _collect(tmp_path, questions, teachers, limit=2, max_retries=0, retry_failed=True)
    again = caught.value.result
    assert again.stats["down"].failed == 2
    _assert_once(_records(again), {(f"q{i}", t, 0) for i in range(2) for t in ("down", "up")})


def test_bad_key_stops_only_that_teacher(tmp_path: Path, server: FaultServer, questions: Path) -> None:
    specs = [{"name": "locked", "model": "401-always"}, {"name": "fine", "model": "ok-g"}]
    result = _collect(tmp_path, questions, _teachers(tmp_path, server, specs), limit=4)
    assert result.stats["locked"].aborted.startswith("HTTP 401")
    assert result.stats["locked"].unsent >= 3
    assert {r.teacher for r in _records(result)} == {"fine"}  # nothing recorded: a rerun will send them
    assert result.stats["fine"].ok == 4


def test_resume_requests_only_missing(tmp_path: Path, server: FaultServer, questions: Path) -> None:
    teachers = _teachers(tmp_path, server, [{"name": "r", "model": "ignore-n+resume"}])
    _collect(tmp_path, questions, teachers, samples=2, limit=2)
    before = len(server.requests)
    result = _collect(tmp_path, questions, teachers, samples=3, limit=4)
    assert len(server.requests) - before == 2 * 3 + 2 * 1  # two new questions, one more sample of the old
    assert result.stats["r"].skipped == 4
    _assert_once(_records(result), {(f"q{i}", "r", s) for i in range(4) for s in range(3)})
    # A teacher whose model or params changed under the same name is refused, naming what changed.
    changed = _teachers(tmp_path, server, [{"name": "r", "model": "other"}], "changed.yaml")
    with pytest.raises(ConfigError, match="other settings \\(teacher r model 'ignore-n\\+resume' -> 'other'; "):
        _collect(tmp_path, questions, changed, limit=4)
    hotter = _teachers(tmp_path, server, [{"name": "r", "model": "ignore-n+resume", "params": {"temperature": 1}}],
                       "hotter.yaml")
    with pytest.raises(ConfigError, match="teacher r params changed"):
        _collect(tmp_path, questions, hotter, limit=4)
    # A new teacher beside the old one is a resume: only its own records are requested.
    both = _teachers(tmp_path, server, [{"name": "r", "model": "ignore-n+resume"}, {"name": "new", "model": "ok-new"}],
                     "both.yaml")
    result = _collect(tmp_path, questions, both, samples=3, limit=4)
    assert result.stats["r"].skipped == 12 and result.stats["new"].ok == 12
    stored = json.loads(traces_config_path(result.out_path).read_text())
    assert list(stored["teachers"]) == ["r", "new"] and stored["stage"] == "collect"


def test_changed_prompt_is_refused_and_overwrite_starts_again(tmp_path: Path, server: FaultServer,
                                                              questions: Path) -> None:
    teachers = _teachers(tmp_path, server, [{"name": "p", "model": "ok-prompt"}])
    first = _collect(tmp_path, questions, teachers, limit=2)
    fp = json.loads(first.config_path.read_text())["fingerprint"]
    assert fp["prompt_template"] == DEFAULT_PROMPT and fp["task"] == str(questions.resolve())  # resolved
    before = first.out_path.read_text()
    for change, what in [({"prompt_template": "Solve: {problem}"}, "prompt_template"),
                         ({"system_prompt": "Be brief."}, "system_prompt None -> 'Be brief.'")]:
        with pytest.raises(ConfigError, match=f"other settings \\({re.escape(what)}.*new --out, --overwrite"):
            _collect(tmp_path, questions, teachers, limit=2, **change)
        assert first.out_path.read_text() == before  # nothing mixed in, the saved config untouched
        assert json.loads(first.config_path.read_text())["fingerprint"] == fp
    again = _collect(tmp_path, questions, teachers, limit=2, prompt_template="Solve: {problem}", overwrite=True)
    records = _records(again)
    assert again.stats["p"].skipped == 0 and len(records) == 2  # the old records are gone, not mixed
    sent = [r["body"]["messages"][-1]["content"] for r in server.requests if r["model"] == "ok-prompt"]
    assert sent[-1].startswith("Solve: ")
    assert json.loads(again.config_path.read_text())["fingerprint"]["prompt_template"] == "Solve: {problem}"
    # --overwrite with unchanged settings is just a resume.
    assert _collect(tmp_path, questions, teachers, limit=2, prompt_template="Solve: {problem}",
                    overwrite=True).stats["p"].skipped == 2


def test_all_requests_failed_exits_non_zero(tmp_path: Path, questions: Path) -> None:
    port = free_port()  # nothing listens there
    teachers = tmp_path / "teachers.yaml"
    teachers.write_text(yaml.safe_dump({"teachers": [{"name": "gone", "base_url": f"http://127.0.0.1:{port}/v1",
                                                      "model": "m"}]}))
    out = tmp_path / "traces.jsonl"
    proc = subprocess.run([sys.executable, "-m", "forkctl", "collect", "--task", str(questions), "--teachers",
                           str(teachers), "--out", str(out), "--limit", "2", "--samples", "2", "--max-retries", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ, "FORKCTL_DEBUG": ""})
    assert proc.returncode == 2, proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "all 4 requests failed (first error: connection error" in error[0], proc.stderr
    assert "--retry-failed" in error[0]
    assert "collect: 4/4 (failed 4 · retried 0)" in proc.stderr  # the progress ends on the true count
    assert "gone" in proc.stdout  # the summary table
    assert len(_records(out)) == 4 and not any(r.ok for r in _records(out))


def test_partial_failure_returns_with_the_failures_counted(tmp_path: Path, server: FaultServer,
                                                          questions: Path) -> None:
    teachers = _teachers(tmp_path, server, [{"name": "down", "model": "500-always"}, {"name": "up", "model": "ok-p"}])
    result = _collect(tmp_path, questions, teachers, limit=2, max_retries=0)  # no NothingCollected: some succeeded
    assert (result.ok, result.failed) == (2, 2)
    with pytest.raises(NothingCollected, match="all 2 requests failed \\(first error: HTTP 500"):
        _collect(tmp_path, questions, teachers, limit=2, max_retries=0, retry_failed=True)


def test_identical_samples_and_teachers_warn(tmp_path: Path, server: FaultServer, questions: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    specs = [{"name": "stuck", "model": "greedy", "samples": 2, "params": {"temperature": 0.3}},
             {"name": "twin", "model": "greedy+ignore-n", "samples": 2, "params": {"temperature": 0.9}},
             {"name": "cold", "model": "greedy+cold", "samples": 2, "params": {"temperature": 0}},
             {"name": "fine", "model": "ok-w", "samples": 2, "params": {"temperature": 0.7}}]
    result = _collect(tmp_path, questions, _teachers(tmp_path, server, specs), limit=3)
    err = capsys.readouterr().err
    assert "teacher stuck: its samples were identical for 3 of 3 questions although its temperature is 0.3" in err
    assert "teacher twin: its samples were identical" in err
    assert "teacher cold" not in err and "teacher fine" not in err  # greedy by choice; sampling really
    assert "teachers stuck and twin returned identical text for 3 questions" in err
    assert "teachers cold and stuck" in err and "fine" not in err
    assert len(result.warnings) == 5


def test_rate_limiter_schedule() -> None:
    """The limiter's own promise: the k-th start is at least k intervals after the first slot, whatever the load
    (a busy machine only wakes sleepers later), and a Retry-After pause pushes every later start back."""
    async def starts(limiter: RateLimiter, n: int) -> list[float]:
        async def one() -> float:
            await limiter.wait()
            return time.monotonic()
        return sorted(await asyncio.gather(*(one() for _ in range(n))))

    limiter = RateLimiter(1200)  # one every 0.05 s
    slots = [limiter.reserve() for _ in range(4)]
    assert [round(b - a, 9) for a, b in zip(slots, slots[1:])] == [0.05] * 3  # evenly spaced, from the first
    limiter = RateLimiter(1200)
    begin = time.monotonic()
    times = asyncio.run(starts(limiter, 5))
    assert all(t - begin >= k * 0.05 - 0.002 for k, t in enumerate(times)), [t - begin for t in times]
    limiter.pause(0.2)
    assert limiter.reserve() - time.monotonic() >= 0.2 - 0.01
    assert RateLimiter(None).reserve() <= time.monotonic()  # no limit: no wait


def test_rpm_and_concurrency_limits(tmp_path: Path, server: FaultServer, questions: Path) -> None:
    teachers = _teachers(tmp_path, server, [{"name": "slowpoke", "model": "ignore-n+rpm", "rpm": 600,
                                             "concurrency": 8},
                                            {"name": "narrow", "model": "ignore-n+delay:0.15+narrow",
                                             "concurrency": 2}])
    begin = time.monotonic()  # the server runs in this process: the same clock
    _collect(tmp_path, questions, teachers, limit=6)
    times = sorted(r["time"] for r in server.requests if r["model"] == "ignore-n+rpm")
    assert len(times) == 6
    # 600 rpm: the k-th request reaches the server no sooner than k * 0.1 s after the run began. Load only delays
    # requests (it may bunch two arrivals, so gaps between arrivals are no test), never brings one forward.
    assert all(t - begin >= k * 0.1 for k, t in enumerate(times)), [round(t - begin, 3) for t in times]
    # Concurrency, counted by the server: never more than 2 requests of "narrow" open at once, and it did use 2.
    assert server.max_in_flight["ignore-n+delay:0.15+narrow"] == 2


def test_no_api_key_anywhere(tmp_path: Path, server: FaultServer, questions: Path,
                             caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-test-Zq8v1Lw3Nn5Pp7Rr9"
    os.environ["FORKCTL_TEST_SECRET"] = secret
    try:
        specs = [{"name": "k", "model": "500-first", "api_key_env": "FORKCTL_TEST_SECRET"},
                 {"name": "echo", "model": "401-always+echo-key", "api_key_env": "FORKCTL_TEST_SECRET"},
                 {"name": "e500", "model": "500-always+echo-key", "api_key_env": "FORKCTL_TEST_SECRET",
                  "samples": 1}]
        teachers = _teachers(tmp_path, server, specs)
        out = tmp_path / "run" / "traces.jsonl"
        with caplog.at_level(logging.DEBUG):
            _collect(tmp_path, questions, teachers, limit=2, out=str(out), max_retries=1)
        # The CLI too, its console output captured.
        proc = subprocess.run([sys.executable, "-m", "forkctl", "collect", "--task", str(questions),
                               "--teachers", str(teachers), "--out", str(tmp_path / "cli" / "t.jsonl"),
                               "--limit", "2", "--backoff", "0.01", "--max-retries", "1"],
                              capture_output=True, text=True, timeout=120, cwd=REPO,
                              env={**os.environ, "FORKCTL_DEBUG": ""})
    finally:
        del os.environ["FORKCTL_TEST_SECRET"]
    assert proc.returncode == 2 and "teacher echo stopped" in proc.stderr, proc.stderr
    assert {r["auth"] for r in server.requests if r["model"].endswith("echo-key")} == {f"Bearer {secret}"}
    assert any(r.error and "***" in r.error for r in _records(out))  # the echoed key was scrubbed
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".config.json") for p in written)
    for path in written:
        assert secret not in path.read_text(errors="replace"), path
    assert secret not in proc.stdout + proc.stderr
    assert secret not in caplog.text and "FORKCTL_TEST_SECRET" in (tmp_path / "run" / "traces.config.json").read_text()


def test_missing_key_variable_is_an_error(tmp_path: Path, server: FaultServer, questions: Path) -> None:
    teachers = _teachers(tmp_path, server, [{"name": "k", "model": "m", "api_key_env": "FORKCTL_UNSET_VAR_XYZ"}])
    with pytest.raises(ValueError, match="FORKCTL_UNSET_VAR_XYZ is not set"):
        _collect(tmp_path, questions, teachers)


# --------------------------------------------------------------------------------------------------
# End to end: the CLI, SIGKILL and resume, transformers serve, then filter


@pytest.mark.slow
def test_sigkill_and_resume_exactly_once(tmp_path: Path, server: FaultServer, questions: Path) -> None:
    qpath = tmp_path / "many.jsonl"
    qpath.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"Compute {i}*3.", "answer": str(3 * i)}) + "\n"
                             for i in range(30)))
    teachers = _teachers(tmp_path, server, [{"name": "a", "model": "delay:0.03+kill", "samples": 2},
                                            {"name": "b", "model": "ignore-n+delay:0.02+kill", "samples": 2}])
    out = tmp_path / "traces.jsonl"
    cmd = [sys.executable, "-m", "forkctl", "collect", "--task", str(qpath), "--teachers", str(teachers),
           "--out", str(out), "--concurrency", "3", "--quiet"]
    expected = {(f"q{i}", t, s) for i in range(30) for t in ("a", "b") for s in range(2)}
    kills = 0
    for threshold in (5, 25, 60, 90):
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= threshold:
                break
            time.sleep(0.005)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        # The kill may have cut the last write short; every line before it is whole and the next run drops it.
        data = out.read_bytes()
        whole = tmp_path / "whole.jsonl"
        whole.write_bytes(data[:data.rfind(b"\n") + 1])
        _assert_no_duplicates(_records(whole))
    assert kills >= 3
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    _assert_once(_records(out), expected)


def _assert_no_duplicates(records: list[TeacherResponse]) -> None:
    counts = Counter(r.key for r in records)
    assert not counts or max(counts.values()) == 1


@pytest.mark.slow
def test_collect_from_transformers_serve(tmp_path: Path, transformers_server: Any, toy_model: Path,
                                         questions: Path) -> None:
    # transformers serve samples only with do_sample (its generation_config, passed through extra_body); the
    # random toy model's greedy output is blank lines, which collect would rightly treat as an empty response.
    params = {"temperature": 1.0, "top_p": 0.95, "max_tokens": 12,
              "extra_body": {"generation_config": json.dumps({"do_sample": True, "max_new_tokens": 12})}}
    teachers = tmp_path / "teachers.yaml"
    teachers.write_text(yaml.safe_dump({"teachers": [
        {"name": "toy", "base_url": transformers_server.base_url, "model": str(toy_model), "params": params,
         "samples": 2, "concurrency": 2, "price": {"input_per_mtok": 0.5, "output_per_mtok": 2.0}}]}))
    out = tmp_path / "traces.jsonl"
    proc = subprocess.run([sys.executable, "-m", "forkctl", "collect", "--task", str(questions), "--teachers",
                           str(teachers), "--out", str(out), "--limit", "2", "--backoff", "0.05"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = _records(out)
    _assert_once(records, {(f"q{i}", "toy", s) for i in range(2) for s in range(2)})
    ok = [r for r in records if r.ok]
    assert ok, [r.error for r in records]
    assert all(r.usage["prompt_tokens"] > 0 and 0 < r.usage["completion_tokens"] <= 12 for r in ok)
    assert "toy" in proc.stdout and "cost" in proc.stdout  # the closing table


@pytest.mark.slow
def test_collect_then_filter_cli(tmp_path: Path, server: FaultServer, questions: Path) -> None:
    teachers = _teachers(tmp_path, server, [
        {"name": "r1", "model": "reasoning+429-first"}, {"name": "g", "model": "ignore-n"},
        {"name": "oss-high", "model": "ignore-n+500-first"}, {"name": "oss-med", "model": "truncate"}])
    out, sets = tmp_path / "traces.jsonl", tmp_path / "sets.jsonl"
    env = {**os.environ, "COLUMNS": "160"}
    proc = subprocess.run([sys.executable, "-m", "forkctl", "collect", "--task", str(questions), "--teachers",
                           str(teachers), "--out", str(out), "--samples", "2", "--limit", "3", "--backoff", "0.01"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "retried" in proc.stdout and "r1" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "forkctl", "filter", "--traces", str(out), "--task",
                           str(questions), "--out", str(sets), "--mode", "majority", "--max-traces", "4"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    from forkctl.records import TraceSet

    trace_sets = read_records(sets, TraceSet)
    assert len(trace_sets) == 3
    for ts in trace_sets:
        assert len(ts.traces) == 4
        assert {t.teacher for t in ts.traces} == {"r1", "g", "oss-high"}  # truncated oss-med dropped
        assert ts.answer == expected_answer(ts.problem)  # the answer the traces agree on, not the gold one
        assert all(f"\\boxed{{{expected_answer(ts.problem)}}}" in t.text for t in ts.traces)  # the majority
        r1 = next(t for t in ts.traces if t.teacher == "r1")
        assert "</think>" in r1.text and r1.text.rstrip().endswith("$.")  # reasoning, then the answer
    assert "truncated" in proc.stdout
    assert "3 question(s) kept by majority disagree with their gold answer" in " ".join(proc.stderr.split())
    bad = subprocess.run([sys.executable, "-m", "forkctl", "filter", "--traces", str(out), "--task",
                          str(questions), "--mode", "vote"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--mode" in bad.stderr and "vote" in bad.stderr

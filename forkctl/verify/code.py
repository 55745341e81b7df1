"""Code answers: LiveCodeBench's extraction and grading semantics, each sample run in its own sandboxed process.

Semantics (mode ``official``, the default) follow LiveCodeBench's ``lcb_runner/evaluation/testing_util.py`` and
``compute_code_generation_metrics.py``: the code is the text between the last two lines holding three backticks;
a fixed prelude of standard-library imports is prepended (recursion limit 50000, int↔str digit limit 50000);
stdin programs have a trailing ``if __name__ == '__main__':`` body hoisted and the rest wrapped into one function
called once per test with substituted stdin/stdout; functional programs call ``Solution().<fn_name>`` (one
instance for all tests) with each input line ``json.loads``-ed into one argument. Each test has a ``timeout``
(6 s) alarm, the whole sample is bounded by ``(timeout + 1) × tests + 5`` s, grading stops at the first failing
test. Verdicts per test: ``pass``, ``wrong_answer``, ``time_limit``, ``runtime_error``, ``compile_error``.

Mode ``fixed`` changes only LiveCodeBench's known false negatives: numeric tokens that are not integers compare
within 1e-6 (absolute or relative) on stdout and for float results; stdin and stdout are real text streams
(``readline()`` keeps newlines, ``readlines()``, iteration, ``sys.stdin.buffer.readline()``,
``sys.stdout.buffer.write``, ``from sys import stdin``, ``open(0)``); no int↔str digit limit.

Isolation — what each sample's process gets (``isolation`` in every result says what actually applied):

* rlimits set in the child before exec: CPU seconds, address space (``memory_mb``, 4 GiB), processes/threads,
  file size, open files, no core dumps;
* a new session (own process group), a fresh working directory, a scrubbed environment (PATH, HOME, LANG only:
  no API keys or tokens), stdin/stdout/stderr of the program on /dev/null (output is captured in-process and
  capped), wall-clock limits enforced by the parent, and the process group SIGKILLed afterwards;
* when the OS permits (root, or unprivileged user namespaces): a new network namespace (no interfaces but a
  down loopback: no network), a new pid namespace whose init takes every leftover process down with it (even
  ones that left the process group), /proc remounted so the host's processes are invisible, and a private
  mount namespace with small tmpfs on /tmp, /var/tmp and /dev/shm; as root, the program also runs under its
  own unprivileged uid per worker slot (so RLIMIT_NPROC bounds fork bombs and root's files are read-only or
  unreadable), with read-only views of the interpreter's folders when that uid could not reach them.

Not isolated: the filesystem stays *readable* wherever it is world-readable; the program shares its process
with the harness, so it can tamper with its *own* verdicts (stdin outputs are re-compared in the parent, but a
functional program's ``==`` runs in-process, as upstream); CPU and memory contention with other samples is only
bounded by rlimits, not by cgroups; without namespaces (an unprivileged user on a kernel without user
namespaces) the program keeps the network and can signal the user's other processes. This is containment for
model-written programs, not a security boundary against a determined attacker (no seccomp, no VM).
"""

from __future__ import annotations

import json
import os
import queue
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from forkctl.verify._code_runner import extract_code, result_matches, stdout_matches

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_code_runner.py")
MODES = ("official", "fixed")
VERDICTS = ("pass", "wrong_answer", "time_limit", "runtime_error", "compile_error")
DEFAULT_TIMEOUT = 6.0
UID_BASE = 1_500_000_000  # per-slot sandbox uids, far above any real account's
MAX_SLOTS = 64


def slot_uid(slot: int) -> int:
    """A uid of its own per (grader process, worker slot): two graders on one machine never share one (each kills
    every process of its uid after a sample)."""
    return UID_BASE + (os.getpid() % 1_000_000) * MAX_SLOTS + slot
STARTUP_GRACE = 30.0  # interpreter start + prelude on a busy machine; not part of the program's time
KILL_GRACE = 2.0  # the parent's backstop beyond the child's own alarm


@dataclass
class CodeProblem:
    """What a program is graded against: ``tests`` are ``{"input", "output"}`` strings, ``testtype`` is
    ``stdin`` or ``functional`` (then ``fn_name`` names the ``Solution`` method)."""

    tests: list[dict[str, str]]
    testtype: str = "stdin"
    fn_name: str | None = None


@dataclass
class SampleResult:
    """One program's grading: per-test verdicts up to the first failure (one ``compile_error`` if it never ran)."""

    passed: bool
    verdicts: list[str]
    error: str | None = None
    isolation: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "verdicts": self.verdicts, "error": self.error, "isolation": self.isolation}


class CodeGrader:
    """Grades programs against their tests, ``workers`` samples at a time (threads, each driving one sandboxed
    child process). ``mode``: ``official`` (LiveCodeBench's verdicts) or ``fixed`` (its false negatives fixed)."""

    def __init__(self, mode: str = "official", timeout: float = DEFAULT_TIMEOUT, workers: int | None = None,
                 memory_mb: int = 4096, max_procs: int = 64, output_cap: int = 16 << 20,
                 tmpfs_mb: int = 64, namespaces: bool = True) -> None:
        if mode not in MODES:
            raise ValueError(f"code grader mode must be one of {MODES}, got {mode!r}")
        self.mode, self.timeout, self.memory_mb = mode, float(timeout), memory_mb
        self.max_procs, self.output_cap, self.tmpfs_mb, self.namespaces = max_procs, output_cap, tmpfs_mb, namespaces
        self.workers = min(workers or max(1, min(os.cpu_count() or 1, 16)), MAX_SLOTS)
        self._slots: queue.Queue[int] = queue.Queue()
        for slot in range(self.workers):
            self._slots.put(slot)

    # -- public API -------------------------------------------------------------------------------------------

    def grade(self, code: str, problem: CodeProblem) -> SampleResult:
        slot = self._slots.get()
        try:
            return _grade_in_child(code, problem, self, slot)
        finally:
            self._slots.put(slot)

    def grade_many(self, jobs: list[tuple[str, CodeProblem]]) -> list[SampleResult]:
        if len(jobs) <= 1:
            return [self.grade(code, problem) for code, problem in jobs]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(jobs))) as pool:
            return list(pool.map(lambda job: self.grade(*job), jobs))

    def grade_response(self, response: str, problem: CodeProblem) -> tuple[str | None, SampleResult]:
        """Extract the code from a model response, then grade it (an empty extraction is graded too, as
        upstream: it fails to compile)."""
        code = extract_code(response)
        return (code or None), self.grade(code, problem)


# -- one sample ---------------------------------------------------------------------------------------------------


def _job(code: str, problem: CodeProblem, grader: CodeGrader, slot: int, workdir: str) -> dict[str, Any]:
    root = os.geteuid() == 0
    ns = grader.namespaces
    outputs = [t["output"] for t in problem.tests]
    return {
        "code": code, "testtype": problem.testtype, "fn_name": problem.fn_name, "mode": grader.mode,
        "timeout": grader.timeout, "output_cap": grader.output_cap,
        "inputs": [t["input"] for t in problem.tests],
        # stdin expectations go to the child only so it can stop early; the parent re-checks every output.
        "outputs": outputs,
        "sandbox": {"netns": ns, "pidns": ns, "mountns": ns, "userns": ns and not root, "workdir": workdir,
                    "tmpfs_mb": grader.tmpfs_mb, "uid": slot_uid(slot) if root else None},
    }


def _limits(grader: CodeGrader, n_tests: int) -> list[tuple[int, int]]:
    cpu = int((grader.timeout + 1) * max(n_tests, 1) + 10)
    mem = grader.memory_mb << 20
    nproc = grader.max_procs if os.geteuid() == 0 else _user_process_count() + grader.max_procs
    return [(resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, mem), (resource.RLIMIT_NPROC, nproc),
            (resource.RLIMIT_FSIZE, 64 << 20), (resource.RLIMIT_NOFILE, 256), (resource.RLIMIT_CORE, 0)]


def _user_process_count() -> int:
    """RLIMIT_NPROC counts all of a user's processes: without a uid of its own, the program gets a margin above
    what the user already runs."""
    uid, count = os.getuid(), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                count += os.stat(f"/proc/{entry}").st_uid == uid
            except OSError:
                pass
    return count


def _preexec(limits: list[tuple[int, int]]):  # type: ignore[no-untyped-def]
    """Runs in the forked child before exec: only setrlimit calls (no imports, no locks)."""
    setrlimit = resource.setrlimit

    def apply() -> None:
        for which, value in limits:
            # CPU: the soft limit sends SIGXCPU (read as a time limit); the hard one SIGKILLs a second later.
            hard = value + 1 if which == resource.RLIMIT_CPU else value
            try:
                setrlimit(which, (value, hard))
            except (ValueError, OSError):
                setrlimit(which, (min(value, resource.getrlimit(which)[1]),) * 2)
    return apply


def _environment(workdir: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def _grade_in_child(code: str, problem: CodeProblem, grader: CodeGrader, slot: int) -> SampleResult:
    started = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="forkctl-code-")
    uid = slot_uid(slot) if os.geteuid() == 0 else None
    if uid is not None:
        os.chown(workdir, uid, uid)
    job = _job(code, problem, grader, slot, workdir)
    proc = subprocess.Popen([sys.executable, "-I", "-B", RUNNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd=workdir, env=_environment(workdir),
                            start_new_session=True, close_fds=True,
                            preexec_fn=_preexec(_limits(grader, len(problem.tests))))
    try:
        _send(proc, json.dumps(job).encode())
        # JSON escaping can grow captured text several-fold; anything beyond this is the program flooding us.
        cap = 8 * sum(grader.output_cap + 2 * len(t["output"]) for t in problem.tests) + (1 << 20)
        events = _collect_events(proc, grader, len(problem.tests), cap)
    finally:
        _kill_everything(proc, uid)
        shutil.rmtree(workdir, ignore_errors=True)
    result = _verdicts(events, problem, grader.mode)
    result.seconds = time.monotonic() - started
    return result


def _send(proc: subprocess.Popen, data: bytes) -> None:
    try:
        assert proc.stdin is not None
        proc.stdin.write(data)
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass  # the child died before reading its job: the event stream says so


class _Deadline(Exception):
    pass


def _collect_events(proc: subprocess.Popen, grader: CodeGrader, n_tests: int, cap: int) -> list[dict[str, Any]]:
    """Read the child's events until ``end`` or EOF, enforcing the wall-clock limits and a cap on bytes. On a
    limit, a synthetic ``deadline`` event is appended."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    events: list[dict[str, Any]] = []
    buffer, total = b"", 0
    now = time.monotonic()
    deadline = now + STARTUP_GRACE + grader.timeout
    sample_deadline: float | None = None
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                events.append({"ev": "deadline"})
                return events
            if not sel.select(timeout=remaining):
                continue
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                return events
            total += len(chunk)
            if total > cap:
                events.append({"ev": "overflow"})
                return events
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                event = _parse_event(line)
                if event is None:
                    continue
                events.append(event)
                kind = event["ev"]
                if kind == "end":
                    return events
                if kind == "start":
                    now = time.monotonic()
                    if sample_deadline is None:
                        sample_deadline = now + (grader.timeout + 1) * n_tests + 5
                    deadline = min(now + grader.timeout + KILL_GRACE, sample_deadline)
                elif kind in ("compiled", "result"):
                    deadline = sample_deadline or time.monotonic() + STARTUP_GRACE


def _parse_event(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None  # something the program wrote into our stream
    return event if isinstance(event, dict) and isinstance(event.get("ev"), str) else None


def _verdicts(events: list[dict[str, Any]], problem: CodeProblem, mode: str) -> SampleResult:
    """Turn the (untrusted) event stream into verdicts: results must come in order; stdin outputs are re-compared
    here; a test that started and never finished is a time limit (deadline, CPU limit) or a runtime error."""
    isolation: dict[str, Any] = {}
    verdicts: list[str] = []
    error: str | None = None
    compiled, started, exit_signal = False, None, 0
    for event in events:
        kind = event["ev"]
        if kind == "isolation":
            isolation = {k: v for k, v in event.items() if k != "ev"}
        elif kind == "compiled":
            compiled = True
        elif kind == "compile_error" and not compiled:
            return SampleResult(False, ["compile_error"], str(event.get("error")), isolation)
        elif kind == "start" and compiled and event.get("i") == len(verdicts) and started is None:
            started = len(verdicts)
        elif kind == "result" and started is not None and event.get("i") == started:
            verdict = _checked_verdict(event, problem.tests[started], problem.testtype, mode)
            verdicts.append(verdict)
            started = None
            if verdict != "pass":
                error = str(event.get("error") or event.get("output", ""))[:300] or None
                break
        elif kind == "exit":
            exit_signal = int(event.get("signal") or 0)
        elif kind in ("deadline", "overflow", "harness_error"):
            error = error or kind + (f": {event.get('error')}" if event.get("error") else "")
    if not compiled:
        return SampleResult(False, ["compile_error"], error or "the program did not start", isolation)
    if started is not None:  # died or was stopped mid-test
        timed_out = any(e["ev"] == "deadline" for e in events) or exit_signal == signal.SIGXCPU
        overflow = any(e["ev"] == "overflow" for e in events)
        verdicts.append("wrong_answer" if overflow else "time_limit" if timed_out else "runtime_error")
        error = error or (f"killed by signal {exit_signal}" if exit_signal else "the program died")
    passed = len(verdicts) == len(problem.tests) and all(v == "pass" for v in verdicts)
    return SampleResult(passed, verdicts, error, isolation)


def _checked_verdict(event: dict[str, Any], test: dict[str, str], testtype: str, mode: str) -> str:
    verdict = event.get("verdict")
    if verdict not in VERDICTS:
        return "runtime_error"
    if testtype == "stdin" and verdict in ("pass", "wrong_answer"):
        output = event.get("output")
        if not isinstance(output, str) or event.get("error") == "output limit exceeded":
            return "wrong_answer"
        return "pass" if stdout_matches(output, test["output"], mode) else "wrong_answer"
    return verdict


def _kill_everything(proc: subprocess.Popen, uid: int | None) -> None:
    """SIGKILL the sample's process group, reap the child, and (with a uid of its own) every process of that
    uid: a process that left the group dies too. With a pid namespace the kernel already did the latter."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for stream in (proc.stdout, proc.stdin):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    if uid is not None:
        _kill_uid(uid)


def _kill_uid(uid: int) -> None:
    for _ in range(20):  # a fork bomb may still be spawning: repeat until none is left
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    os.kill(int(entry), signal.SIGKILL)
                    found = True
            except (OSError, ProcessLookupError):
                pass
        if not found:
            return
        time.sleep(0.01)


def grade_code(code: str, problem: CodeProblem, mode: str = "official",
               timeout: float = DEFAULT_TIMEOUT) -> SampleResult:
    """One program, one grader: for scripts and tests. Batch work should share a :class:`CodeGrader`."""
    return CodeGrader(mode=mode, timeout=timeout, workers=1).grade(code, problem)


__all__ = ["CodeGrader", "CodeProblem", "DEFAULT_TIMEOUT", "MODES", "SampleResult", "VERDICTS", "extract_code",
           "grade_code", "result_matches", "stdout_matches"]

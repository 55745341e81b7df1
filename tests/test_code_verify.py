"""The code grader: LiveCodeBench's semantics (official), its false negatives fixed (fixed), and containment of
hostile programs while the rest of a batch is still graded right."""

from __future__ import annotations

import os
import uuid

import pytest

from code_cases import CASES, inline, load_sample, problem_of
from forkctl.verify.code import CodeGrader, CodeProblem, extract_code, stdout_matches

SAMPLE = load_sample()
ADD = inline([("1 2\n", "3\n"), ("5 6\n", "11\n")])
ADD_OK = "a, b = map(int, input().split())\nprint(a + b)\n"


def _problem(p: dict) -> CodeProblem:
    return CodeProblem(p["tests"], p["testtype"], p["fn_name"])


def _first_failure(result) -> str:
    return "pass" if result.passed else next(v for v in result.verdicts if v != "pass")


@pytest.fixture(scope="module")
def graders() -> dict[str, CodeGrader]:
    return {mode: CodeGrader(mode=mode, timeout=6, workers=2) for mode in ("official", "fixed")}


@pytest.mark.parametrize("mode", ["official", "fixed"])
def test_sample_solutions_and_edge_cases(graders, mode):
    jobs = [(c["code"], _problem(problem_of(c, SAMPLE))) for c in CASES]
    results = graders[mode].grade_many(jobs)
    got = {c["name"]: _first_failure(r) for c, r in zip(CASES, results)}
    assert got == {c["name"]: c[mode] for c in CASES}
    assert all(len(r.verdicts) <= len(problem_of(c, SAMPLE)["tests"]) for c, r in zip(CASES, results))


def test_extraction_takes_the_last_fenced_block():
    text = "plan\n```python\nprint(1)\n```\nbetter:\n```python\nprint(2)\nprint(3)\n```\ndone"
    assert extract_code(text) == "print(2)\nprint(3)"
    assert extract_code("no code ```here```") == ""
    assert extract_code("```\nx\n```") == "x"


def test_comparison_rules():
    assert stdout_matches("  1 2\n3  \n\n", "1 2\n3")
    assert stdout_matches("1.50", "1.5")  # equal as Decimals
    assert not stdout_matches("1\n2", "1 2")
    assert not stdout_matches("0.333333333", "0.3333333333")
    assert stdout_matches("0.333333333", "0.3333333333", mode="fixed")
    assert not stdout_matches("50000000000000001", "50000000000000000", mode="fixed")  # integers stay exact


def test_grade_response_extracts_then_grades(graders):
    code, result = graders["official"].grade_response(f"Here:\n```python\n{ADD_OK}```\n", _problem(ADD))
    assert code == ADD_OK.rstrip("\n") and result.passed and result.verdicts == ["pass", "pass"]
    code, result = graders["official"].grade_response("no code", _problem(ADD))
    assert code is None and result.verdicts == ["compile_error"]


def test_timeouts_stop_at_the_first_test():
    grader = CodeGrader(timeout=0.5, workers=1)
    result = grader.grade("while True:\n    pass\n", _problem(ADD))
    assert result.verdicts == ["time_limit"] and not result.passed
    # a functional program stuck while compiling fails to compile, as upstream (-4)
    looping = "while True:\n    pass\nclass Solution:\n    def add(self, a, b):\n        return a + b\n"
    result = grader.grade(looping, CodeProblem([{"input": "1\n2", "output": "3"}], "functional", "add"))
    assert result.verdicts == ["compile_error"]


# ------------------------------------------------------------------------------------------------------------
# Hostile programs. Each must not harm this machine: rlimits are set before exec, the fork bomb is bounded by
# RLIMIT_NPROC under a uid of its own (or the pids of a fresh namespace), 50 GB fails at once under RLIMIT_AS.

FORK_BOMB = """
import posix
while True:
    try:
        posix.fork()
    except OSError:
        pass
"""
KILL_PARENT = """
import posix
for target in (posix.getppid(), 1):
    try:
        posix.kill(target, 9)
    except OSError:
        pass
posix.killpg(0, 9)
"""
DEEP_C_RECURSION = "a = []\nfor _ in range(6 * 10 ** 4):\n    a = [a]\nprint(a)\n"


def _hostile(marker: str, outside: str) -> dict[str, str]:
    return {
        "infinite_loop": "while True:\n    pass\n",
        "allocate_50gb": "x = bytearray(50 * 10 ** 9)\nprint(len(x))\n",
        "kill_parent": KILL_PARENT,
        "print_gigabytes": "import sys\nwhile True:\n    sys.stdout.write('x' * (1 << 20))\n",
        "print_to_fd1": "import posix\nwhile True:\n    posix.write(1, b'x' * (1 << 20))\n",
        "deep_recursion": "def f(n):\n    return f(n + 1)\nf(0)\n",
        "background": (f"import posix\nif posix.fork() == 0:\n    posix.setsid()\n"
                       f"    posix.execv('/bin/sleep', ['sleep', '{marker}'])\nprint(3)\n"),
    }


def _leftovers(marker: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if marker.encode() in fh.read():
                    found.append(pid)
        except OSError:
            pass
    return found


def test_hostile_programs_are_contained_and_the_rest_is_graded_right(tmp_path, monkeypatch):
    monkeypatch.setenv("FORKCTL_TEST_SECRET", "s3cr3t-token")
    marker = str(900000 + uuid.uuid4().int % 99999)
    outside = tmp_path / "pwned.txt"
    host_tmp = f"/tmp/forkctl-pwned-{marker}"
    add_once = inline([("1 2\n", "3\n")])
    hostile = _hostile(marker, str(outside))
    contained = {  # programs that try something, then answer: they should pass with the attempt blocked
        "write_outside": (f"for path in ({str(outside)!r}, {host_tmp!r}):\n    try:\n        open(path, 'w').write('x')\n"
                          f"    except OSError:\n        pass\nprint(3)\n"),
        "read_secret": "import os\nprint(os.environ.get('FORKCTL_TEST_SECRET', 3))\n",
        "network": ("import socket\ntry:\n    socket.create_connection(('1.1.1.1', 80), timeout=3)\n    print('online')\n"
                    "except OSError:\n    print(3)\n"),
    }
    grader = CodeGrader(timeout=2, workers=2, output_cap=1 << 20)
    names = list(hostile) + list(contained) + ["ok", "wrong"]
    codes = list(hostile.values()) + list(contained.values()) + [ADD_OK, "print(4)"]
    results = dict(zip(names, grader.grade_many([(c, _problem(add_once)) for c in codes])))

    expected = {"infinite_loop": "time_limit", "allocate_50gb": "runtime_error", "kill_parent": "runtime_error",
                "print_gigabytes": "wrong_answer", "print_to_fd1": "time_limit", "deep_recursion": "runtime_error",
"background": "pass", "ok": "pass", "wrong": "wrong_answer",
                **{name: "pass" for name in contained}}
    assert {n: _first_failure(results[n]) for n in expected} == expected
    assert "MemoryError" in (results["allocate_50gb"].error or "")
    assert not outside.exists() and not os.path.exists(host_tmp)
    assert _leftovers(marker) == []
    isolation = results["ok"].isolation
    if os.geteuid() == 0:  # what this machine (root, namespaces allowed) must provide
        assert isolation["netns"] and isolation["pidns"] and isolation["private_tmp"] and isolation["uid"]
    # Alone, so that their CPU use cannot starve the timing of the others (rlimits, not cgroups, bound CPU).
    assert grader.grade(FORK_BOMB, _problem(add_once)).verdicts == ["time_limit"]
    assert CodeGrader(timeout=6).grade(DEEP_C_RECURSION, _problem(add_once)).verdicts == ["runtime_error"]
    # the grader still works afterwards, and nothing of the sandbox uids is left running
    assert grader.grade(ADD_OK, _problem(ADD)).passed
    if os.geteuid() == 0:
        assert not [p for p in filter(str.isdigit, os.listdir("/proc")) if _uid_of(p) >= 1_500_000_000]


def _uid_of(pid: str) -> int:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return -1

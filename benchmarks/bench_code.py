"""Tests graded per second: forkctl's code grader (one sandboxed process per sample, samples in parallel) against
a naive grader (one plain subprocess per test, sequential), on the same programs, measured in one run.

    OMP_NUM_THREADS=1 python benchmarks/bench_code.py [--repeat 2]

The programs are the test suite's sample solutions and edge cases (tests/code_cases.py); both graders must agree
on every verdict, and the ratio of their rates is printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from code_cases import CASES, load_sample, problem_of  # noqa: E402
from forkctl.verify.code import RUNNER, CodeGrader, CodeProblem, stdout_matches  # noqa: E402


def naive_grade(code: str, problem: CodeProblem, timeout: float) -> list[str]:
    """One fresh, unsandboxed interpreter per test, in order, stopping at the first failure."""
    verdicts = []
    for test in problem.tests:
        job = {"code": code, "testtype": problem.testtype, "fn_name": problem.fn_name, "mode": "official",
               "timeout": timeout, "output_cap": 16 << 20, "inputs": [test["input"]], "outputs": [test["output"]],
               "sandbox": {}}
        proc = subprocess.run([sys.executable, "-I", RUNNER], input=json.dumps(job).encode(), capture_output=True,
                              timeout=timeout + 30)
        events = [json.loads(line) for line in proc.stdout.splitlines()]
        result = next((e for e in events if e["ev"] in ("result", "compile_error")), {"verdict": "runtime_error"})
        verdict = "compile_error" if result["ev"] == "compile_error" else result["verdict"]
        if verdict in ("pass", "wrong_answer") and problem.testtype == "stdin":
            verdict = "pass" if stdout_matches(result.get("output", ""), test["output"]) else "wrong_answer"
        verdicts.append(verdict)
        if verdict != "pass":
            break
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=2, help="copies of the program set")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    sample = load_sample()
    jobs = []
    for case in CASES * args.repeat:
        p = problem_of(case, sample)
        jobs.append((case["code"], CodeProblem(p["tests"], p["testtype"], p["fn_name"])))

    grader = CodeGrader(timeout=6, workers=args.workers)
    start = time.perf_counter()
    ours = grader.grade_many(jobs)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    naive = [naive_grade(code, problem, 6) for code, problem in jobs]
    naive_s = time.perf_counter() - start

    graded = sum(len(r.verdicts) for r in ours)
    agree = sum(r.verdicts == n for r, n in zip(ours, naive))
    print(f"programs: {len(jobs)}, tests graded: {graded}, verdict lists identical: {agree}/{len(jobs)}")
    print(f"forkctl grader ({grader.workers} workers, sandboxed): {graded / ours_s:7.1f} tests/s ({ours_s:.2f} s)")
    print(f"naive sequential subprocess per test:          {graded / naive_s:7.1f} tests/s ({naive_s:.2f} s)")
    print(f"ratio: {naive_s / ours_s:.2f}x")


if __name__ == "__main__":
    main()

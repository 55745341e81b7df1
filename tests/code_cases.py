"""Programs for the code grader's tests (and for comparing its verdicts with LiveCodeBench's own grader):
correct and wrong solutions to sample problems of both test types, and the known false-negative edge cases.

Each case: ``problem`` (a sample id or an inline problem), ``code``, and the expected first non-pass verdict
(or ``pass``) under ``official`` and ``fixed``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

# Where conftest looks too (FORKCTL_SHARED_DATA, else ../shared/data beside the checkout).
SAMPLE = Path(os.environ.get("FORKCTL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) \
    / "lcb_sample.jsonl"


def load_sample() -> dict[str, dict[str, Any]]:
    """The LiveCodeBench sample rows by id; skips the calling test (or module) when the shared data is absent, as
    conftest's ``data_dir`` does."""
    if not SAMPLE.exists():
        pytest.skip(f"LiveCodeBench sample not found at {SAMPLE} (set FORKCTL_SHARED_DATA)", allow_module_level=True)
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    return {row["id"]: row for row in rows}


def inline(tests: list[tuple[str, str]], testtype: str = "stdin", fn_name: str | None = None) -> dict[str, Any]:
    return {"tests": [{"input": i, "output": o} for i, o in tests], "testtype": testtype, "fn_name": fn_name}


SECOND_LARGEST = """
n = int(input())
a = list(map(int, input().split()))
print(a.index(sorted(a)[-2]) + 1)
"""
SECOND_LARGEST_WRONG = """
n = int(input())
a = list(map(int, input().split()))
print(a.index(max(a)) + 1)
"""
DAYS_MAIN_GUARD = """
import sys

def main():
    y = int(sys.stdin.readline())
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    print(366 if leap else 365)

if __name__ == "__main__":
    main()
"""
DAYS_WRONG = "y = int(input())\nprint(366 if y % 4 == 0 else 365)\n"
ARITH_READ_ALL = """
import sys
a, b = map(int, sys.stdin.read().split())
print(len({x for x in range(-300, 400) if any(q - p == r - q for p, q, r in
      [(a, b, x), (a, x, b), (b, a, x), (b, x, a), (x, a, b), (x, b, a)])}))
"""
ARITH_CRASH = "a, b = map(int, input().split())\nprint(a // 0)\n"
TARO_SYS_STDIN_NAME = """
from sys import stdin
input = stdin.readline
n, m = map(int, input().split())
seen = set()
for _ in range(m):
    a, b = input().split()
    if b == "M" and a not in seen:
        seen.add(a)
        print("Yes")
    else:
        print("No")
"""
TARO_GLOBAL = """
n, m = map(int, input().split())
seen = set()
def taro(a, b):
    global seen
    if b == "M" and a not in seen:
        seen.add(a)
        return "Yes"
    return "No"
for _ in range(m):
    print(taro(*input().split()))
"""
BROTHERS_ITERATE = """
import sys
for line in sys.stdin:
    ab, ac, bc = line.split()
    older = {"A": 0, "B": 0, "C": 0}
    older["A" if ab == ">" else "B"] += 1
    older["A" if ac == ">" else "C"] += 1
    older["B" if bc == ">" else "C"] += 1
    print([k for k, v in older.items() if v == 1][0])
"""
TWELVE_OPEN0 = "s = open(0).read().split()\nprint(sum(len(x) == i + 1 for i, x in enumerate(s)))\n"
TWELVE_INPUT = "print(sum(len(input()) == i + 1 for i in range(12)))\n"
REAL_RAW = "print(input())\n"  # "12.340" vs "12.34": equal as Decimals, so it passes
SNAKE = """
class Solution:
    def finalPositionOfSnake(self, n: int, commands: List[str]) -> int:
        r = c = 0
        for cmd in commands:
            dr, dc = {"UP": (-1, 0), "DOWN": (1, 0), "LEFT": (0, -1), "RIGHT": (0, 1)}[cmd]
            r, c = r + dr, c + dc
        return r * n + c
"""
SNAKE_WRONG = SNAKE.replace("r * n + c", "c * n + r")
WINNERS = """
class Solution:
    def winningPlayerCount(self, n: int, pick: List[List[int]]) -> int:
        count = Counter(map(tuple, pick))
        return sum(any(count[(i, c)] > i for c in range(11)) for i in range(n))
"""
FLIPS = """
class Solution:
    def minFlips(self, grid):
        rows = sum(r[j] != r[-1 - j] for r in grid for j in range(len(r) // 2))
        cols = sum(col[j] != col[-1 - j] for col in zip(*grid) for j in range(len(grid) // 2))
        return min(rows, cols)
"""
ALTERNATING_TUPLE = """
class Solution:
    def numberOfAlternatingGroups(self, colors, queries):
        out = []
        n = len(colors)
        for q in queries:
            if q[0] == 1:
                s = q[1]
                out.append(sum(all(colors[(i + k) % n] != colors[(i + k + 1) % n] for k in range(s - 1))
                               for i in range(n)))
            else:
                colors[q[1]] = q[2]
        return tuple(out)
"""
WRONG_NAME = "class Solution:\n    def finalPosition(self, n, commands):\n        return 0\n"

CASES: list[dict[str, Any]] = [
    # name, problem, code, official, fixed
    {"name": "stdin-correct", "problem": "lcb-v5-000", "code": SECOND_LARGEST, "official": "pass", "fixed": "pass"},
    {"name": "stdin-wrong", "problem": "lcb-v5-000", "code": SECOND_LARGEST_WRONG, "official": "wrong_answer",
     "fixed": "wrong_answer"},
    {"name": "main-guard", "problem": "lcb-v5-001", "code": DAYS_MAIN_GUARD, "official": "pass", "fixed": "pass"},
    {"name": "days-wrong", "problem": "lcb-v5-001", "code": DAYS_WRONG, "official": "wrong_answer",
     "fixed": "wrong_answer"},
    {"name": "read-all", "problem": "lcb-v5-036", "code": ARITH_READ_ALL, "official": "pass", "fixed": "pass"},
    {"name": "crash", "problem": "lcb-v5-036", "code": ARITH_CRASH, "official": "runtime_error",
     "fixed": "runtime_error"},
    {"name": "from-sys-stdin", "problem": "lcb-v5-046", "code": TARO_SYS_STDIN_NAME, "official": "pass",
     "fixed": "pass"},
    {"name": "global-in-wrapped", "problem": "lcb-v5-046", "code": TARO_GLOBAL, "official": "runtime_error",
     "fixed": "runtime_error"},
    {"name": "iterate-stdin", "problem": "lcb-v5-052", "code": BROTHERS_ITERATE, "official": "runtime_error",
     "fixed": "pass"},
    {"name": "open0", "problem": "lcb-v5-059", "code": TWELVE_OPEN0, "official": "wrong_answer", "fixed": "pass"},
    {"name": "twelve-input", "problem": "lcb-v5-059", "code": TWELVE_INPUT, "official": "pass", "fixed": "pass"},
    {"name": "decimal-equal", "problem": "lcb-v5-023", "code": REAL_RAW, "official": "pass", "fixed": "pass"},
    {"name": "functional-correct", "problem": "lcb-v5-007", "code": SNAKE, "official": "pass", "fixed": "pass"},
    {"name": "functional-wrong", "problem": "lcb-v5-007", "code": SNAKE_WRONG, "official": "wrong_answer",
     "fixed": "wrong_answer"},
    {"name": "functional-prelude", "problem": "lcb-v5-009", "code": WINNERS, "official": "pass", "fixed": "pass"},
    {"name": "functional-flips", "problem": "lcb-v5-010", "code": FLIPS, "official": "pass", "fixed": "pass"},
    {"name": "functional-tuple", "problem": "lcb-v5-006", "code": ALTERNATING_TUPLE, "official": "pass",
     "fixed": "pass"},
    {"name": "functional-no-method", "problem": "lcb-v5-007", "code": WRONG_NAME, "official": "compile_error",
     "fixed": "compile_error"},
    {"name": "syntax-error", "problem": "lcb-v5-000", "code": "print(", "official": "compile_error",
     "fixed": "compile_error"},
    {"name": "empty-code", "problem": "lcb-v5-000", "code": "", "official": "compile_error",
     "fixed": "compile_error"},
    # LiveCodeBench's known false negatives
    {"name": "float-last-digits", "problem": inline([("1 3\n", "0.3333333333\n")]),
     "code": "a, b = map(int, input().split())\nprint(a / b)\n", "official": "wrong_answer", "fixed": "pass"},
    {"name": "big-int-exact", "problem": inline([("\n", "50000000000000000\n")]),
     "code": "print(50000000000000001)\n", "official": "wrong_answer", "fixed": "wrong_answer"},
    {"name": "stdout-buffer", "problem": inline([("1 2\n", "3\n")]),
     "code": "import sys\na, b = map(int, input().split())\nsys.stdout.buffer.write(f'{a + b}\\n'.encode())\n",
     "official": "runtime_error", "fixed": "pass"},
    {"name": "buffer-readline", "problem": inline([("1\n2\n", "3\n")]),
     "code": "import sys\na = int(sys.stdin.buffer.readline())\nb = int(sys.stdin.buffer.readline())\nprint(a + b)\n",
     "official": "wrong_answer", "fixed": "pass"},
    {"name": "buffer-readlines", "problem": inline([("1\n2\n", "3\n")]),
     "code": "import sys\nprint(sum(int(x) for x in sys.stdin.buffer.readlines()))\n",
     "official": "runtime_error", "fixed": "pass"},
    {"name": "int-str-digits", "problem": inline([("60000\n", "1" + "0" * 60000 + "\n")]),
     "code": "print(10 ** int(input()))\n", "official": "runtime_error", "fixed": "pass"},
]


def problem_of(case: dict[str, Any], sample: dict[str, dict[str, Any]]) -> dict[str, Any]:
    p = case["problem"]
    return sample[p] if isinstance(p, str) else p

"""The walk task: the embedded toy's world (``examples/toy``), where SSFT's specialisation and GFPO's per-question
choice both show within minutes on a CPU.

Question: a keyword and 5..8 digits whose first and last differ; the answer is the digit the keyword names::

    first of: 3 7 2 9 5          -> 3
    last of: 3 7 2 9 5           -> 5

Two strategies, both always right, walk to the asked digit from opposite ends, writing each digit they pass::

    front: 3 answer=3            back: 5 9 2 7 3 answer=3         (first of: ...)
    front: 3 7 2 9 5 answer=5    back: 5 answer=5                 (last of: ...)

The walk that starts at the asked end takes one step; the other walks the whole list. Under a length budget that
fits one step but not five (``max_new_tokens`` 8 with the toy's tokenizer), only the short walk reaches its answer,
so which forking token is best depends on the question: after SSFT each token is one walk and right on about half
of the questions, and choosing per question (by the keyword) is right on nearly all of them — what GFPO learns.
Both walks are copies, so a ~0.5 M-parameter model learns them in a few hundred steps.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forkctl.errors import UserError
from forkctl.records import Question, Trace, TraceSet, write_records
from forkctl.tasks.base import Scored, Task
from forkctl.tasks.synthetic import extract_answer, is_test_problem

WALKS = ("front", "back")
KEYWORDS = ("first", "last")
MIN_DIGITS, MAX_DIGITS = 5, 8
_PROBLEM_RE = re.compile(r"(first|last) of: ((?:\d ?)+)")
_WALK_RE = re.compile(r"^(front|back): \d")


@dataclass
class WalkProblem:
    keyword: str
    digits: list[int]

    @property
    def text(self) -> str:
        return f"{self.keyword} of: " + " ".join(map(str, self.digits))

    @property
    def answer(self) -> int:
        return self.digits[0] if self.keyword == "first" else self.digits[-1]

    @property
    def short_walk(self) -> str:
        """The walk that reaches the answer in one step."""
        return "front" if self.keyword == "first" else "back"


def find_problem(text: str) -> WalkProblem | None:
    """The walk problem in a text (a user message may hold more than the problem), or None."""
    m = _PROBLEM_RE.search(text)
    return WalkProblem(m.group(1), [int(d) for d in m.group(2).split()]) if m else None


def parse_problem(text: str) -> WalkProblem:
    problem = find_problem(text)
    if problem is None:
        raise UserError(f"not a synthetic-walk problem: {text[:40]!r}")
    return problem


def solve(problem: WalkProblem, walk: str) -> str:
    """The trace of ``walk`` (always right): the digits from its end up to the asked one, then the answer."""
    if walk not in WALKS:
        raise UserError(f"unknown walk {walk!r}; use one of {', '.join(WALKS)}")
    digits = problem.digits if walk == "front" else problem.digits[::-1]
    steps = digits[:1] if walk == problem.short_walk else digits
    return f"{walk}: " + " ".join(map(str, steps)) + f" answer={problem.answer}"


def classify(text: str) -> str:
    """The walk a generated text follows (``front``/``back``, from its first step, even when truncated), else
    ``unknown``."""
    m = _WALK_RE.match(text.strip())
    return m.group(1) if m else "unknown"


def generate_problems(count: int, seed: int = 0, split: str = "train") -> list[WalkProblem]:
    """``count`` distinct problems of ``split`` (train/test disjoint by a hash of the text), keywords alternating
    so every split is balanced. Deterministic in ``seed``."""
    if split not in {"train", "test"}:
        raise UserError(f"split must be train or test, got {split!r}")
    rng = random.Random(f"synthetic-walk|{seed}|{split}")
    seen: set[str] = set()
    out: list[WalkProblem] = []
    for _ in range(200 * count + 10_000):
        if len(out) == count:
            return out
        digits = [rng.randint(0, 9) for _ in range(rng.randint(MIN_DIGITS, MAX_DIGITS))]
        p = WalkProblem(KEYWORDS[len(out) % 2], digits)
        if digits[0] == digits[-1] or p.text in seen or is_test_problem(p.text) != (split == "test"):
            continue  # equal ends: a wrong walk's first digit would be right by luck
        seen.add(p.text)
        out.append(p)
    raise UserError(f"could not draw {count} distinct {split} synthetic-walk questions")


def write_trace_sets(out: str | Path, questions: int = 2000, seed: int = 0) -> Path:
    """Trace sets of training questions, one trace per walk each (both right), in a shuffled order."""
    if questions < 1:
        raise UserError(f"--questions must be >= 1, got {questions}")
    rng = random.Random(f"walk-order|{seed}")
    sets = []
    for i, p in enumerate(generate_problems(questions, seed, "train")):
        walks = list(WALKS)
        rng.shuffle(walks)
        traces = [Trace(teacher="synthetic", text=solve(p, w), extra={"strategy": w}) for w in walks]
        sets.append(TraceSet(id=f"walk-train-{seed}-{i}", problem=p.text, answer=str(p.answer), traces=traces,
                             extra={"keyword": p.keyword}))
    path = Path(out)
    write_records(path, sets)
    return path


def corpus(num_questions: int = 2000, seed: int = 0) -> list[str]:
    """Text for a tokenizer fitted to the task: problems and both walks."""
    lines = ["user assistant system"] * 200
    for p in generate_problems(num_questions, seed, "train") + generate_problems(num_questions // 9, seed, "test"):
        lines.append(p.text)
        lines.extend(solve(p, w) for w in WALKS)
    return lines


def build_model(out_dir: str | Path, num_forks: int = 2, hidden_size: int = 128, num_layers: int = 2,
                seed: int = 0) -> Path:
    """A fresh tiny Qwen2 (~0.5 M parameters at the defaults) with a tokenizer fitted to the walk task."""
    from forkctl.toy import build_toy_model

    return build_toy_model(out_dir, num_forks=num_forks, hidden_size=hidden_size, num_layers=num_layers,
                           num_heads=4, num_kv_heads=2, intermediate_size=4 * hidden_size, vocab_size=320,
                           max_positions=256, seed=seed, corpus=corpus(seed=seed))


class WalkTask(Task):
    """synthetic-walk questions (held-out ``test`` split by default); each scored sample records its
    ``strategy`` (the walk: front/back/unknown) and the question's ``keyword``."""

    def __init__(self, name: str = "synthetic-walk", count: int = 300, seed: int = 0, split: str = "test") -> None:
        self.name, self.count, self.seed, self.split = name, count, seed, split

    def load(self) -> list[Question]:
        return [Question(id=f"walk-{self.split}-{self.seed}-{i}", problem=p.text, answer=str(p.answer),
                         extra={"keyword": p.keyword})
                for i, p in enumerate(generate_problems(self.count, self.seed, self.split))]

    def extract_answer(self, text: str) -> str | None:
        return extract_answer(text)

    def score(self, items: list[tuple[Question, list[str]]]) -> list[list[Scored]]:
        out = []
        for q, texts in items:
            keyword = parse_problem(q.problem).keyword
            row = []
            for t in texts:
                answer = extract_answer(t)
                correct = answer is not None and int(answer) == int(q.answer)
                row.append(Scored(answer, correct, None if answer is None else int(answer),
                                  {"strategy": classify(t), "keyword": keyword}))
            out.append(row)
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "source": "forkctl.tasks.walk", "count": self.count, "seed": self.seed,
                "split": self.split}


def held_out(**_: Any) -> WalkTask:
    return WalkTask()


def train_split(**_: Any) -> WalkTask:
    """Training questions (collect, filter, gfpo); never held-out ones."""
    return WalkTask("synthetic-walk-train", count=2000, seed=1, split="train")

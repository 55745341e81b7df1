"""The walk task: the embedded toy's world (``examples/toy``), where SSFT's specialisation and GFPO's per-question
choice both show within minutes on a CPU.

Question: a keyword and 5..8 digits whose first and last differ; the answer is the digit the keyword names::

    first of: 3 7 2 9 5          -> 3
    last of: 3 7 2 9 5           -> 5

Two strategies, both always right, walk to the asked digit from opposite ends, writing each digit they pass::

    front: 3 answer=3            back: 5 9 2 7 3 answer=3         (first of: ...)
    front: 3 7 2 9 5 answer=5    back: 5 answer=5                 (last of: ...)

The walk that starts at the asked end takes one step; the other walks the whole list. Under a length budget that
fits one step but not five (``max_new_tokens`` 10 with the toy's tokenizer: 7 tokens against 15 or more), only the
short walk reaches its answer, so which forking token is best depends on the question: after SSFT each token is one
walk and right on about half of the questions, and choosing per question (by the keyword) is right on nearly all
of them — what GFPO learns. Both walks are copies, so a ~0.5 M-parameter model learns them in a few hundred steps.

The questions are synthetic-choice's (:mod:`forkctl.tasks.synthetic`) with more digits; only the traces differ
(there, one mode is wrong; here, one is long).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from forkctl.errors import UserError
from forkctl.tasks.synthetic import (CHOICE_MODES, ChoiceProblem, ChoiceTask, KeywordFamily, build_choice_model,
                                     write_choice_trace_sets)

WALKS = CHOICE_MODES  # front, back
MIN_DIGITS, MAX_DIGITS = 5, 8
_WALK_RE = re.compile(r"^(front|back): \d")


def solve(problem: ChoiceProblem, walk: str) -> str:
    """The trace of ``walk`` (always right): the digits from its end up to the asked one, then the answer."""
    if walk not in WALKS:
        raise UserError(f"unknown walk {walk!r}; use one of {', '.join(WALKS)}")
    digits = problem.digits if walk == "front" else problem.digits[::-1]
    steps = digits[:1] if walk == problem.right_mode else digits
    return f"{walk}: " + " ".join(map(str, steps)) + f" answer={problem.answer}"


def classify(text: str) -> str:
    """The walk a generated text follows (from its first step, even when truncated), else ``unknown``."""
    m = _WALK_RE.match(text.strip())
    return m.group(1) if m else "unknown"


WALK = KeywordFamily("synthetic-walk", "walk", MIN_DIGITS, MAX_DIGITS, solve, classify)


def write_trace_sets(out: str | Path, questions: int = 2000, seed: int = 0) -> Path:
    """Trace sets of training questions, one trace per walk each (both right), in a shuffled order."""
    return write_choice_trace_sets(out, questions, seed, WALK)


def build_model(out_dir: str | Path, num_forks: int = 2, hidden_size: int = 128, num_layers: int = 2,
                seed: int = 0) -> Path:
    """A fresh tiny Qwen2 (~0.5 M parameters at the defaults) with a tokenizer fitted to the walk task."""
    return build_choice_model(out_dir, num_forks, hidden_size, num_layers, seed, WALK)


def held_out(**_: Any) -> ChoiceTask:
    return ChoiceTask("synthetic-walk", family=WALK)


def train_split(**_: Any) -> ChoiceTask:
    """Training questions (collect, filter, gfpo); never held-out ones."""
    return ChoiceTask("synthetic-walk-train", count=2000, seed=1, split="train", family=WALK)

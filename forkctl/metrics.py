"""Metrics over scored samples: pass@k (unbiased), cons@k, cons@native, per-fork accuracy, NMI.

Definitions (also in the README):
- pass@k: per question 1 - C(n-c, k) / C(n, k) with n samples of which c are correct, averaged over questions.
- cons@k: majority vote over a question's first k samples (sample order), votes grouped by answer equivalence
  class, ties broken by the class seen first, a missing answer is a vote for "none"; the question counts if the
  winning class is correct.
- cons@native: per question, S = samples per forking token groups, group s holding the s-th sample of every
  token; each group is voted as in cons@k; the mean over groups, then over questions.
"""

from __future__ import annotations

from forkctl.errors import UserError
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Vote:
    """One sample as the vote-counting sees it: its answer's equivalence class (None = no answer) and
    whether that answer is correct."""

    answer_class: int | None
    correct: bool


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one question (Chen et al. 2021)."""
    if k > n:
        raise UserError(f"pass@{k} needs at least {k} samples per question, got {n}")
    if k < 1:
        raise UserError(f"k must be >= 1, got {k}")
    if n - c < k:
        return 1.0
    # 1 - prod_{i=n-c+1}^{n} (1 - k/i), stable for large n
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def majority_correct(votes: Sequence[Vote]) -> bool:
    """Whether the majority class of ``votes`` is correct; ties go to the class seen first; "none" can win."""
    if not votes:
        return False
    counts = Counter(v.answer_class for v in votes)
    best = max(counts.values())
    winner = next(v for v in votes if counts[v.answer_class] == best)  # first-seen among the tied
    return winner.answer_class is not None and winner.correct


def cons_at_k(votes: Sequence[Vote], k: int) -> bool:
    if k > len(votes):
        raise UserError(f"cons@{k} needs at least {k} samples per question, got {len(votes)}")
    return majority_correct(votes[:k])


def cons_native(votes: Sequence[Vote], forks: Sequence[int | None]) -> float:
    """Mean over groups s of the majority vote of {s-th sample of each forking token}."""
    by_fork: dict[int | None, list[Vote]] = defaultdict(list)
    for v, f in zip(votes, forks, strict=True):
        by_fork[f].append(v)
    groups = min(len(vs) for vs in by_fork.values())
    if groups == 0:
        return 0.0
    order = sorted(by_fork, key=lambda f: (f is None, f or 0))
    return sum(majority_correct([by_fork[f][s] for f in order]) for s in range(groups)) / groups


def nmi(xs: Sequence[object], ys: Sequence[object]) -> float:
    """Normalised mutual information I(X;Y) / sqrt(H(X) H(Y)) of two labelings (0 when either is constant)."""
    n = len(xs)
    if n == 0 or n != len(ys):
        raise UserError("nmi needs two labelings of the same non-zero length")
    px, py, pxy = Counter(xs), Counter(ys), Counter(zip(xs, ys))
    hx = -sum(c / n * math.log(c / n) for c in px.values())
    hy = -sum(c / n * math.log(c / n) for c in py.values())
    if hx == 0 or hy == 0:
        return 0.0
    mi = sum(c / n * math.log(c * n / (px[x] * py[y])) for (x, y), c in pxy.items())
    return max(0.0, mi / math.sqrt(hx * hy))


def summarize(questions: dict[str, list[tuple[Vote, int | None]]], ks: Sequence[int],
              native: bool) -> dict[str, object]:
    """All metrics for questions -> their samples in sample order as (vote, fork)."""
    if not questions:
        raise UserError("no scored samples to summarise")
    out: dict[str, object] = {}
    n_min = min(len(s) for s in questions.values())
    for k in ks:
        if k > n_min:
            raise UserError(f"k={k} is larger than the number of samples per question ({n_min})")
    for k in ks:
        out[f"pass@{k}"] = _mean(pass_at_k(len(s), sum(v.correct for v, _ in s), k) for s in questions.values())
    for k in ks:
        out[f"cons@{k}"] = _mean(float(cons_at_k([v for v, _ in s], k)) for s in questions.values())
    if native:
        out["cons@native"] = _mean(cons_native([v for v, _ in s], [f for _, f in s]) for s in questions.values())
    per_fork: dict[str, dict[str, float | int]] = {}
    tallies: dict[int | None, list[bool]] = defaultdict(list)
    for s in questions.values():
        for v, f in s:
            tallies[f].append(v.correct)
    for f in sorted(tallies, key=lambda f: (f is None, f or 0)):
        per_fork["none" if f is None else str(f)] = {"n": len(tallies[f]), "accuracy": _mean(map(float, tallies[f]))}
    out["per_fork"] = per_fork
    out["accuracy"] = _mean(float(v.correct) for s in questions.values() for v, _ in s)
    out["num_questions"] = len(questions)
    out["num_samples"] = sum(len(s) for s in questions.values())
    return out


def _mean(values) -> float:  # noqa: ANN001
    vals = list(values)
    return sum(vals) / len(vals) if vals else 0.0

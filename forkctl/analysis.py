"""The maths behind ``forkctl inspect``: per-token statistics, coverage, diversity, matching and GFPO summaries.

Pure functions over records (:class:`forkctl.records.Sample`) and log entries (plain dicts); no I/O, no styling.
pass@k, cons@k, cons@native and NMI are :mod:`forkctl.metrics`'s; this module only groups samples for them.

Conventions (also in docs/inspect.md):
- a token key is ``"1"``..``"N"`` for ``<think1>``..``<thinkN>``, ``"none"`` for a plain prompt;
- a sample is correct only when ``correct is True`` (``None``, not judged, counts as wrong, as in eval);
- truncated: ``finish_reason == "length"``; no answer: ``answer is None``;
- p90 is the nearest-rank percentile: the smallest value with at least 90% of the values at or below it;
- answer classes (for votes and disagreement): every correct sample is one class (each is equivalent to the gold
  answer), a wrong answer is its own string, no answer is the class ``None``. eval's judge groups wrong answers by
  equivalence; the saved samples keep only the extracted string, so two equivalent spellings of the same wrong
  answer count as two answers here.
"""

from __future__ import annotations

import math
import random
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from forkctl.metrics import Vote, cons_at_k, cons_native, majority_correct, nmi, pass_at_k
from forkctl.records import Sample

NGRAM = 5  # word n-gram length for text similarity, as filter's near-duplicate check
_WORD = re.compile(r"\w+|[^\w\s]")
TEXTS_PER_TOKEN = 2  # texts of each token per question compared for similarity (texts can be 10k+ words)
MAX_PAIRS = 50  # at most this many of their pairs of each kind per question (a seeded sample above)

# --------------------------------------------------------------------------------------------------
# Grouping


def fork_key(fork: int | None) -> str:
    return "none" if fork is None else str(fork)


def key_order(key: str) -> tuple[int, int]:
    """Tokens by number, then "none" (the order metrics.summarize uses)."""
    return (1, 0) if key == "none" else (0, int(key))


def sorted_keys(keys: Iterable[str]) -> list[str]:
    return sorted(set(keys), key=key_order)


def by_question(samples: Iterable[Sample]) -> dict[str, list[Sample]]:
    """Question id -> its samples in sample order; questions in order of first appearance."""
    out: dict[str, list[Sample]] = {}
    for s in samples:
        out.setdefault(s.question_id, []).append(s)
    for rows in out.values():
        rows.sort(key=lambda s: s.sample)
    return out


def is_correct(s: Sample) -> bool:
    return s.correct is True


def answer_class(s: Sample) -> tuple[str, ...] | None:
    """The vote class of a sample (see the module docstring)."""
    if s.answer is None:
        return None
    return ("correct",) if is_correct(s) else ("answer", s.answer)


def votes(samples: Sequence[Sample]) -> list[Vote]:
    """metrics.Vote for each sample: classes numbered in order of first appearance within the question."""
    ids: dict[tuple[str, ...], int] = {}
    out = []
    for s in samples:
        cls = answer_class(s)
        out.append(Vote(None if cls is None else ids.setdefault(cls, len(ids)), is_correct(s)))
    return out


# --------------------------------------------------------------------------------------------------
# Per-token table


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in (0, 100]): sorted(values)[ceil(q/100 * n) - 1]."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def group_stats(samples: Sequence[Sample]) -> dict[str, float | int]:
    """The per-token row for one group of samples (all of one token, or all of a run)."""
    n = len(samples)
    lengths = [s.num_tokens for s in samples]
    per_q: dict[str, set[str]] = {}
    for s in samples:
        answers = per_q.setdefault(s.question_id, set())  # a question without any answer counts, with 0
        if s.answer is not None:
            answers.add(s.answer)
    return {
        "n": n,
        "questions": len(per_q),
        "accuracy": _rate(is_correct(s) for s in samples),
        "mean_tokens": sum(lengths) / n if n else 0.0,
        "median_tokens": float(statistics.median(lengths)) if n else 0.0,
        "p90_tokens": float(percentile(lengths, 90)),
        "truncation_rate": _rate(s.finish_reason == "length" for s in samples),
        "no_answer_rate": _rate(s.answer is None for s in samples),
        "distinct_answers": sum(len(a) for a in per_q.values()) / len(per_q) if per_q else 0.0,
    }


def per_fork_stats(samples: Sequence[Sample], policy: bool = False) -> dict[str, dict[str, float | int]]:
    """Token key -> :func:`group_stats`. A policy run (the model chose each sample's token) gets a ``"policy"`` row
    over all samples first, and each token row a ``chosen_rate`` (its share of the samples); a token's accuracy is
    then its accuracy when chosen."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[fork_key(s.fork)].append(s)
    out: dict[str, dict[str, float | int]] = {}
    if policy:
        out["policy"] = group_stats(samples)
    for key in sorted_keys(groups):
        out[key] = group_stats(groups[key])
        if policy:
            out[key]["chosen_rate"] = len(groups[key]) / len(samples)
    return out


# --------------------------------------------------------------------------------------------------
# pass@k / cons@k, coverage


def sample_counts(questions: dict[str, list[Sample]]) -> int:
    """The smallest number of samples of any question (the largest k every question supports)."""
    return min((len(v) for v in questions.values()), default=0)


def pass_cons(questions: dict[str, list[Sample]], ks: Iterable[int]) -> dict[str, float]:
    """pass@k and cons@k (metrics' definitions) for each k every question has enough samples for."""
    n_min = sample_counts(questions)
    out: dict[str, float] = {}
    for k in sorted({k for k in ks if 1 <= k <= n_min}):
        out[f"pass@{k}"] = _mean(pass_at_k(len(v), sum(map(is_correct, v)), k) for v in questions.values())
        out[f"cons@{k}"] = _mean(float(cons_at_k(votes(v), k)) for v in questions.values())
    return out


def pass_curve(questions: dict[str, list[Sample]]) -> list[dict[str, float]]:
    """pass@k and cons@k for k = 1..(fewest samples of a question): the data of the pass@k plot."""
    stats = pass_cons(questions, range(1, sample_counts(questions) + 1))
    return [{"k": k, "pass": stats[f"pass@{k}"], "cons": stats[f"cons@{k}"]}
            for k in range(1, sample_counts(questions) + 1)]


def native_consensus(questions: dict[str, list[Sample]]) -> float | None:
    """cons@native when every sample has a token and there are several (an ``all`` run), else None."""
    forks = {s.fork for v in questions.values() for s in v}
    if None in forks or len(forks) < 2:
        return None
    return _mean(cons_native(votes(v), [s.fork for s in v]) for v in questions.values())


def coverage(questions: dict[str, list[Sample]]) -> dict[str, Any]:
    """Which tokens solve which questions (a token solves a question when one of its samples is correct).

    Per question: each token's ``[correct, samples]`` and the majority vote over all the question's samples;
    per token: questions it solves and questions only it solves; ``lost_by_vote``: questions some sample solves
    but whose majority vote is wrong (what a better vote, or a verifier, could still win)."""
    per_question: dict[str, dict[str, Any]] = {}
    for qid, rows in questions.items():
        tally: dict[str, list[int]] = {}
        for s in rows:
            t = tally.setdefault(fork_key(s.fork), [0, 0])
            t[0] += is_correct(s)
            t[1] += 1
        per_question[qid] = {"by_fork": {k: tally[k] for k in sorted_keys(tally)},
                             "any": any(c for c, _ in tally.values()),
                             "vote": majority_correct(votes(rows))}
    keys = sorted_keys(k for q in per_question.values() for k in q["by_fork"])
    per_fork = {}
    for key in keys:
        solved = [qid for qid, q in per_question.items() if q["by_fork"].get(key, [0, 0])[0] > 0]
        only = [qid for qid in solved
                if all(c == 0 for k, (c, _) in per_question[qid]["by_fork"].items() if k != key)]
        per_fork[key] = {"solves": len(solved), "only": len(only), "only_ids": only}
    return {"questions": len(per_question),
            "any": sum(q["any"] for q in per_question.values()),
            "vote": sum(q["vote"] for q in per_question.values()),
            "lost_by_vote": [qid for qid, q in per_question.items() if q["any"] and not q["vote"]],
            "per_fork": per_fork, "per_question": per_question}


# --------------------------------------------------------------------------------------------------
# Diversity


def shingles(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    """Word n-grams of a lowercased text (the words themselves for texts shorter than n words); the same
    tokenisation as filter's near-duplicate check."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {(w,) for w in words}
    return set(zip(*(words[i:] for i in range(n))))


def shingle_hashes(text: str, n: int = NGRAM) -> set[int]:
    """:func:`shingles` as hashes: the same Jaccard (up to 64-bit collisions) at a fraction of the cost, since
    intersecting int sets never compares tuples of strings."""
    return set(map(hash, shingles(text, n)))


def jaccard(a: set[Any], b: set[Any]) -> float:
    if not a and not b:
        return 1.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)  # |a ∪ b| without building it


def diversity(questions: dict[str, list[Sample]], n: int = NGRAM, texts_per_token: int = TEXTS_PER_TOKEN,
              max_pairs: int = MAX_PAIRS) -> dict[str, Any]:
    """Whether the tokens produce different things, as numbers: over pairs of samples of the same question,
    answer disagreement (different answer classes) and text similarity (word n-gram Jaccard), for pairs of
    different tokens ("across") and of the same token ("within"). Each is the mean over questions of the mean over
    that question's pairs (questions without such a pair are left out). Collapse: across ≈ within.

    Disagreement uses every pair. Similarity reads long reasoning texts, so it uses each token's first
    ``texts_per_token`` samples of a question and at most ``max_pairs`` of their pairs of each kind (a sample seeded
    by the question id): a bounded cost per question however many samples there are.
    With a ``strategy`` on the samples (the synthetic task): the strategy-by-token counts and NMI(token; strategy).
    """
    acc: dict[str, list[float]] = {"disagree_across": [], "disagree_within": [], "similar_across": [],
                                   "similar_within": []}
    for qid, rows in questions.items():
        classes = [answer_class(s) for s in rows]
        seen: Counter[int | None] = Counter()
        texts = []  # indices of the samples whose texts are compared
        for k, s in enumerate(rows):
            seen[s.fork] += 1
            if seen[s.fork] <= texts_per_token:
                texts.append(k)
        grams: dict[int, set[int]] = {}
        for where in ("across", "within"):
            def kind(i: int, j: int) -> bool:
                return (rows[i].fork != rows[j].fork) == (where == "across")

            pairs = [(i, j) for i in range(len(rows)) for j in range(i + 1, len(rows)) if kind(i, j)]
            if not pairs:
                continue
            acc[f"disagree_{where}"].append(_mean(float(classes[i] != classes[j]) for i, j in pairs))
            pairs = [(i, j) for a, i in enumerate(texts) for j in texts[a + 1:] if kind(i, j)]
            if len(pairs) > max_pairs:
                pairs = random.Random(f"{qid}|{where}").sample(pairs, max_pairs)
            for k in {k for pair in pairs for k in pair} - set(grams):
                grams[k] = shingle_hashes(rows[k].text, n)
            if pairs:
                acc[f"similar_{where}"].append(_mean(jaccard(grams[i], grams[j]) for i, j in pairs))
    out: dict[str, Any] = {name: (_mean(v) if v else None) for name, v in acc.items()}
    out["ngram"] = n
    samples = [s for rows in questions.values() for s in rows]
    if any("strategy" in s.extra for s in samples):
        strategies = [str(s.extra.get("strategy", "unknown")) for s in samples]
        keys = [fork_key(s.fork) for s in samples]
        matrix: dict[str, dict[str, int]] = {k: {} for k in sorted_keys(keys)}
        for k, st in zip(keys, strategies):
            matrix[k][st] = matrix[k].get(st, 0) + 1
        out["strategy_by_fork"] = matrix
        out["strategies"] = sorted(set(strategies))
        out["nmi"] = nmi(keys, strategies)
    return out


# --------------------------------------------------------------------------------------------------
# SSFT matching log


def matched_cost(entry: dict[str, Any]) -> float | None:
    """Mean over a question's traces of C[token, trace] under the logged assignment (None without a cost)."""
    cost, assignment = entry.get("cost"), entry.get("assignment") or []
    if not cost or not assignment:
        return None
    return sum(cost[t - 1][j] for j, t in enumerate(assignment)) / len(assignment)


def matching_stats(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Summaries of an SSFT matching log (entries ``{step, epoch, question_id, assignment, traces, cost}``).

    - ``token_source`` / ``token_source_all``: token x source (the trace's strategy or teacher) counts over each
      question's last assignment / over every logged step; ``nmi``: NMI(token; source) of the former;
    - ``switches``: per visit v >= 2 of a question (a question is seen once per epoch), how many questions were
      seen a v-th time and how many of them got another assignment than at visit v-1; ``switch_rate`` pools them;
    - ``cost_by_step``: per step, the mean matched cost over its questions (bipartite runs only).
    """
    ordered = sorted(entries, key=lambda e: e.get("step", 0))  # stable: ranks' files keep their own order
    history: dict[str, list[tuple[int, ...]]] = defaultdict(list)
    last: dict[str, dict[str, Any]] = {}
    all_pairs: Counter[tuple[str, str]] = Counter()
    costs: dict[int, list[float]] = defaultdict(list)
    for e in ordered:
        qid = str(e["question_id"])
        assignment = tuple(e.get("assignment") or ())
        history[qid].append(assignment)
        last[qid] = e
        all_pairs.update(_pairs(e))
        c = matched_cost(e)
        if c is not None:
            costs[int(e.get("step", 0))].append(c)
    final = Counter(p for e in last.values() for p in _pairs(e))
    switches = []
    for v in range(2, max((len(h) for h in history.values()), default=0) + 1):
        seen = [h for h in history.values() if len(h) >= v]
        switches.append({"visit": v, "questions": len(seen), "changed": sum(h[v - 1] != h[v - 2] for h in seen)})
    total = sum(s["questions"] for s in switches)
    tokens, sources = [p[0] for p in final.elements()], [p[1] for p in final.elements()]
    return {
        "entries": len(ordered),
        "questions": len(history),
        "steps": len({e.get("step") for e in ordered}),
        "matching": sorted({str(e.get("matching")) for e in ordered if e.get("matching")}),
        "token_source": _matrix(final),
        "token_source_all": _matrix(all_pairs),
        "nmi": nmi(tokens, sources) if tokens else None,
        "switches": switches,
        "switch_rate": sum(s["changed"] for s in switches) / total if total else None,
        "questions_ever_changed": sum(len(set(h)) > 1 for h in history.values()),
        "cost_by_step": [{"step": s, "cost": _mean(costs[s])} for s in sorted(costs)],
    }


def _pairs(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """(token key, source) per trace; logs written before sources were logged say "?"."""
    assignment = entry.get("assignment") or []
    sources = entry.get("traces") or ["?"] * len(assignment)
    return [(str(t), str(src)) for t, src in zip(assignment, sources)]


def _matrix(pairs: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for tok in sorted_keys(t for t, _ in pairs):
        out[tok] = {src: pairs[(tok, src)] for src in sorted({s for _, s in pairs}) if pairs[(tok, src)]}
    return out


# --------------------------------------------------------------------------------------------------
# GFPO log and series


GFPO_FIELDS = ("reward_mean", "pi_entropy", "pi_mean_entropy", "zero_variance_frac", "truncated_frac", "loss")


def gfpo_series(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The GFPO step log as columns (steps in order), with first/last values of the main curves."""
    ordered = sorted(entries, key=lambda e: e["step"])
    series: dict[str, Any] = {"step": [e["step"] for e in ordered],
                              "pi_mean": [list(e.get("pi_mean") or []) for e in ordered]}
    for name in GFPO_FIELDS:
        series[name] = [e.get(name) for e in ordered]
    num_forks = max((len(p) for p in series["pi_mean"]), default=0)
    summary = {}
    if ordered:
        for name in ("reward_mean", "pi_entropy", "zero_variance_frac"):
            summary[name] = {"first": series[name][0], "last": series[name][-1]}
        summary["pi_mean"] = {"first": series["pi_mean"][0], "last": series["pi_mean"][-1]}
    return {"steps": len(ordered), "num_forks": num_forks, "series": series, "summary": summary}


def bins(n: int, max_bins: int) -> list[tuple[int, int]]:
    """Split indices 0..n-1 into at most ``max_bins`` consecutive [start, end) ranges of near-equal size, so a long
    log fits in a short table (each row the mean of its range)."""
    if n <= 0:
        return []
    count = min(n, max_bins)
    edges = [round(i * n / count) for i in range(count + 1)]
    return [(edges[i], edges[i + 1]) for i in range(count)]


def binned_mean(values: Sequence[float | None], ranges: Sequence[tuple[int, int]]) -> list[float | None]:
    out = []
    for a, b in ranges:
        vals = [v for v in values[a:b] if v is not None]
        out.append(sum(vals) / len(vals) if vals else None)
    return out


def binned_vectors(rows: Sequence[Sequence[float]], ranges: Sequence[tuple[int, int]]) -> list[list[float]]:
    """Element-wise mean of the vectors (π per token) in each range."""
    out = []
    for a, b in ranges:
        chunk = [r for r in rows[a:b] if r]
        width = max((len(r) for r in chunk), default=0)
        out.append([sum(r[i] for r in chunk) / len(chunk) for i in range(width)] if chunk else [])
    return out


# --------------------------------------------------------------------------------------------------
# Comparing two eval runs


def question_gains(base: dict[str, list[Sample]], other: dict[str, list[Sample]]) -> dict[str, Any]:
    """Per question common to both runs: accuracy (share of correct samples) in each and the difference;
    gains (other better), losses (other worse), largest change first; and majority-vote flips."""
    rows = []
    flips = {"gained": 0, "lost": 0}
    for qid in base:
        if qid not in other:
            continue
        a, b = _mean(map(float, map(is_correct, base[qid]))), _mean(map(float, map(is_correct, other[qid])))
        rows.append({"question_id": qid, "base": a, "other": b, "delta": b - a})
        va, vb = majority_correct(votes(base[qid])), majority_correct(votes(other[qid]))
        flips["gained"] += vb and not va
        flips["lost"] += va and not vb
    gains = sorted((r for r in rows if r["delta"] > 0), key=lambda r: -r["delta"])
    losses = sorted((r for r in rows if r["delta"] < 0), key=lambda r: r["delta"])
    return {"common": len(rows), "only_base": len(set(base) - set(other)), "only_other": len(set(other) - set(base)),
            "gains": gains, "losses": losses, "unchanged": len(rows) - len(gains) - len(losses),
            "vote_gained": flips["gained"], "vote_lost": flips["lost"]}


def _rate(flags: Iterable[bool]) -> float:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else 0.0


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else 0.0

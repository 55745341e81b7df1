"""``forkctl filter``: keep, per question, up to M distinct correct traces from the collected responses.

A response is dropped, in this order, as: *failed* (recorded with an error or no text), *truncated*
(``finish_reason == "length"``), *wrong* (reference mode: not Math-Verify-equivalent to the gold answer; majority
mode: not in the majority answer class, or the question has no majority), *too long* (over ``--max-tokens`` of
``--tokenizer``), *duplicate* (a near-copy of a trace already kept: word 5-gram Jaccard similarity at or above
``--dedup-threshold``), or *surplus* (correct, but M were already kept). Traces are taken round-robin over teachers
(teachers in the order of collect's teachers file, else by name; samples in order), so the M kept come from as many
different teachers as possible. A question left with fewer than ``--min-traces`` is dropped (*too few*).

A trace's text is what follows the forking token: the response's ``reasoning`` (when the server returned it
separately), then ``--reasoning-separator`` (default ``\\n</think>\\n\\n``), then the content; without a separate
reasoning, the content alone, minus a leading ``<think>`` tag (the forking token takes its place).
"""

from __future__ import annotations

from forkctl.errors import UserError
import json
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from forkctl.config import FilterConfig
from forkctl.records import Question, RecordError, TeacherResponse, Trace, TraceSet, read_records, write_json, \
    write_records

# Why a response is not in the output, in the order the checks run (the summary's per-teacher columns).
DROP_REASONS = ("failed", "truncated", "wrong", "too_long", "duplicate", "surplus", "too_few")


@dataclass
class QuestionOutcome:
    """How one question fared: responses seen, correct ones, traces kept, and why it was dropped if it was."""

    responses: int = 0
    correct: int = 0
    kept: int = 0
    majority: str | None = None
    note: str | None = None  # "no gold answer", "no majority", "too few traces"


@dataclass
class FilterResult:
    out_path: Path
    summary_path: Path
    trace_sets: list[TraceSet]
    per_teacher: dict[str, Counter]
    per_question: dict[str, QuestionOutcome]

    def survivors_histogram(self) -> dict[int, int]:
        """Number of questions by traces kept (0..M)."""
        return dict(sorted(Counter(o.kept for o in self.per_question.values()).items()))


def trace_text(r: TeacherResponse, separator: str = "\n</think>\n\n") -> str:
    """The text that follows the forking token for one response (see the module docstring)."""
    content = (r.text or "").strip()
    if r.reasoning and r.reasoning.strip():
        return r.reasoning.strip() + separator + content
    if content.startswith("<think>"):
        content = content[len("<think>"):].lstrip()
    return content


def run_filter(cfg: FilterConfig) -> FilterResult:
    cfg.validate()
    from forkctl.tasks import get_task

    questions = get_task(cfg.task).load()  # type: ignore[arg-type]
    by_question, teacher_order = _group(Path(cfg.traces), {q.id for q in questions})  # type: ignore[arg-type]
    per_teacher: dict[str, Counter] = {t: Counter() for t in teacher_order}
    per_question: dict[str, QuestionOutcome] = {}
    candidates: dict[str, list[TeacherResponse]] = {}
    for q in questions:
        rs = by_question.get(q.id, [])
        per_question[q.id] = QuestionOutcome(responses=len(rs))
        candidates[q.id] = [r for r in rs if _usable(r, per_teacher[r.teacher])]
    correct = _judge(cfg, questions, candidates, per_teacher, per_question)
    counter = _TokenCounter(cfg.tokenizer, cfg.max_tokens)
    trace_sets = []
    for q in questions:
        kept = _select(cfg, correct.get(q.id, []), teacher_order, per_teacher, counter)
        outcome = per_question[q.id]
        if len(kept) < cfg.min_traces:
            for r in kept:
                per_teacher[r.teacher]["too_few"] += 1
            outcome.note = outcome.note or _why_dropped(outcome)
            continue
        outcome.kept = len(kept)
        for r in kept:
            per_teacher[r.teacher]["kept"] += 1
        # Majority mode on questions without gold: the agreed answer stands in for it.
        answer = q.answer if q.answer is not None else outcome.majority
        trace_sets.append(TraceSet(id=q.id, problem=q.problem, answer=answer,
                                   traces=[Trace(teacher=r.teacher, text=trace_text(r, cfg.reasoning_separator))
                                           for r in kept]))
    out = Path(cfg.out)
    write_records(out, trace_sets)
    summary_path = out.with_name(out.stem + ".summary.json")
    write_json(summary_path, {"config": asdict(cfg), "per_teacher": {t: dict(c) for t, c in per_teacher.items()},
                              "per_question": {k: asdict(v) for k, v in per_question.items()}})
    return FilterResult(out, summary_path, trace_sets, per_teacher, per_question)


def _why_dropped(outcome: QuestionOutcome) -> str:
    if outcome.responses == 0:
        return "no responses"
    if outcome.correct == 0:
        return "no correct traces"
    return "too few traces"


def _group(path: Path, question_ids: set[str]) -> tuple[dict[str, list[TeacherResponse]], list[str]]:
    """Records by question (the last record of a repeated key wins), and teachers in order of appearance."""
    latest: dict[tuple[str, str, int], TeacherResponse] = {}
    unknown: list[str] = []
    for r in read_records(path, TeacherResponse):
        if r.question_id not in question_ids:
            unknown.append(r.question_id)
            continue
        latest.pop(r.key, None)
        latest[r.key] = r
    if unknown:
        raise RecordError(str(path), "question_id", f"{len(set(unknown))} question id(s) not among --task "
                          f"(first: {unknown[0]!r}); pass the questions the traces were collected for")
    teacher_order = _teacher_order(path, {r.teacher for r in latest.values()})
    by_question: dict[str, list[TeacherResponse]] = defaultdict(list)
    for r in sorted(latest.values(), key=lambda r: (teacher_order.index(r.teacher), r.sample)):
        by_question[r.question_id].append(r)
    return by_question, teacher_order


def _teacher_order(path: Path, teachers: set[str]) -> list[str]:
    """The teachers file's order when collect's saved config is beside the traces, else by name."""
    from forkctl.collect import config_path_for

    order: list[str] = []
    config = config_path_for(path)
    if config.exists():
        try:
            order = [t for t in json.loads(config.read_text()).get("teachers", {}) if t in teachers]
        except (json.JSONDecodeError, AttributeError):
            order = []
    return order + sorted(teachers - set(order))


def _usable(r: TeacherResponse, counts: Counter) -> bool:
    if r.error is not None or not (r.text or r.reasoning or "").strip():
        counts["failed"] += 1
        return False
    if r.finish_reason == "length":
        counts["truncated"] += 1
        return False
    return True


def _answer(r: TeacherResponse) -> str | None:
    if r.answer is not None:
        return r.answer
    from forkctl.verify.math import extract_answer

    return extract_answer(r.text or "") or (extract_answer(r.reasoning) if r.reasoning else None)


def _judge(cfg: FilterConfig, questions: list[Question], candidates: dict[str, list[TeacherResponse]],
           per_teacher: dict[str, Counter], per_question: dict[str, QuestionOutcome]) -> dict[str, list[TeacherResponse]]:
    """The correct candidates of each question, judged with Math-Verify in one batch over all questions."""
    from forkctl.verify.math import get_math_judge

    todo = [q for q in questions if candidates[q.id]]
    if cfg.mode == "reference":
        for q in [q for q in todo if q.answer is None]:
            per_question[q.id].note = "no gold answer"
            for r in candidates[q.id]:
                per_teacher[r.teacher]["wrong"] += 1
        todo = [q for q in todo if q.answer is not None]
    gold = (lambda q: q.answer) if cfg.mode == "reference" else (lambda q: None)
    judgements = get_math_judge().judge_many([(gold(q), [_answer(r) for r in candidates[q.id]]) for q in todo])
    out: dict[str, list[TeacherResponse]] = {}
    for q, j in zip(todo, judgements):
        rs = candidates[q.id]
        if cfg.mode == "reference":
            ok = [bool(c) for c in j.correct]
        else:
            ok = _majority(j.classes, cfg.quorum)
            if not any(ok):
                per_question[q.id].note = "no majority"
            else:
                per_question[q.id].majority = _answer(rs[ok.index(True)])
        for r, good in zip(rs, ok):
            if not good:
                per_teacher[r.teacher]["wrong"] += 1
        out[q.id] = [r for r, good in zip(rs, ok) if good]
        per_question[q.id].correct = len(out[q.id])
    return out


def _majority(classes: list[int | None], quorum: float) -> list[bool]:
    """Members of the single largest answer class, if it holds at least ``quorum`` of the answered responses;
    a tie for largest means no majority (all False)."""
    sizes = Counter(c for c in classes if c is not None)
    if not sizes:
        return [False] * len(classes)
    (top, n_top), *rest = sizes.most_common()
    if rest and rest[0][1] == n_top:
        return [False] * len(classes)
    if n_top / sum(sizes.values()) < quorum:
        return [False] * len(classes)
    return [c == top for c in classes]


class _TokenCounter:
    """Token counts with the given tokenizer (loaded on first use); no limit when none is given."""

    def __init__(self, tokenizer: str | None, max_tokens: int | None) -> None:
        self.name, self.max_tokens = tokenizer, max_tokens
        self._tok: Any = None

    def too_long(self, text: str) -> bool:
        if self.max_tokens is None:
            return False
        if self._tok is None:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(self.name)
        return len(self._tok(text, add_special_tokens=False)["input_ids"]) > self.max_tokens


def _select(cfg: FilterConfig, correct: list[TeacherResponse], teacher_order: list[str],
            per_teacher: dict[str, Counter], counter: _TokenCounter) -> list[TeacherResponse]:
    """Up to M correct traces, round-robin over teachers, skipping too-long and near-duplicate ones."""
    by_teacher: dict[str, list[TeacherResponse]] = defaultdict(list)
    for r in correct:
        by_teacher[r.teacher].append(r)
    order = [by_teacher[t][i] for i in range(max((len(v) for v in by_teacher.values()), default=0))
             for t in teacher_order if i < len(by_teacher[t])]
    kept: list[TeacherResponse] = []
    kept_shingles: list[set[tuple[str, ...]]] = []
    for r in order:
        text = trace_text(r, cfg.reasoning_separator)
        if counter.too_long(text):
            per_teacher[r.teacher]["too_long"] += 1
            continue
        sh = shingles(text)
        if any(jaccard(sh, other) >= cfg.dedup_threshold for other in kept_shingles):
            per_teacher[r.teacher]["duplicate"] += 1
            continue
        if len(kept) >= cfg.max_traces:
            per_teacher[r.teacher]["surplus"] += 1
            continue
        kept.append(r)
        kept_shingles.append(sh)
    return kept


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """Word n-grams of a lowercased text (the words themselves for texts shorter than n words)."""
    words = re.findall(r"\w+|[^\w\s]", text.lower())
    if len(words) < n:
        return {(w,) for w in words}
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set[Any], b: set[Any]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def summary_tables(result: FilterResult) -> list[Any]:
    """Per teacher: kept / wrong / truncated / failed / duplicate / too long / surplus / too few; per question:
    how many questions kept 0, 1, ..., M traces, and the dropped questions."""
    from rich.table import Table

    teachers = Table(title=f"filter · per teacher · {result.out_path}")
    teachers.add_column("teacher")
    cols = ("kept", *DROP_REASONS)
    for c in cols:
        teachers.add_column(c.replace("_", " "), justify="right")
    for name, counts in result.per_teacher.items():
        teachers.add_row(name, *(str(counts.get(c, 0)) for c in cols))
    hist = Table(title=f"per question · {len(result.trace_sets)} of {len(result.per_question)} kept")
    hist.add_column("traces kept", justify="right")
    hist.add_column("questions", justify="right")
    for k, n in result.survivors_histogram().items():
        hist.add_row(str(k), str(n))
    dropped = Counter(o.note or "dropped" for o in result.per_question.values() if o.kept == 0)
    if dropped:
        hist.caption = "dropped: " + ", ".join(f"{n} {why}" for why, n in dropped.most_common())
    return [teachers, hist]



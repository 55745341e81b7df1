"""``forkctl filter``: keep, per question, up to M distinct correct traces from the collected responses.

A response is dropped, in this order, as: *failed* (recorded with an error or no text), *truncated*
(``finish_reason == "length"``), *wrong* (judged by the task: Math-Verify for math, the checker for synthetic;
reference mode: not correct against the gold answer; majority mode: not in the majority answer class, or the
question has no majority: the largest class needs ``min_votes`` members and ``--quorum`` of all the question's
non-failed responses, answered or not), *too long* (over ``--max-tokens`` of
``--tokenizer``), *duplicate* (a near-copy of a trace already kept: word 5-gram Jaccard similarity at or above
``--dedup-threshold``), or *surplus* (correct, but M were already kept). Traces are taken round-robin over teachers
(teachers in the order of collect's teachers file, else by name; samples in order), so the M kept come from as many
different teachers as possible. A question left with fewer than ``--min-traces`` is dropped (*too few*).

A trace's text is what follows the forking token: the response's ``reasoning`` (when the server returned it
separately), then ``--reasoning-separator`` (default ``\\n</think>\\n\\n``), then the content; without a separate
reasoning, the content alone, minus a leading ``<think>`` tag (the forking token takes its place).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from forkctl import console
from forkctl.analysis import jaccard, shingles
from forkctl.config import FilterConfig, file_identity, write_run_config
from forkctl.errors import UserError
from forkctl.records import Question, RecordError, TeacherResponse, Trace, TraceSet, read_records, write_records
from forkctl.teachers import teacher_order

# Why a response is not in the output, in the order the checks run (the summary's per-teacher columns).
DROP_REASONS = ("failed", "truncated", "wrong", "too_long", "duplicate", "surplus", "too_few")


@dataclass
class QuestionOutcome:
    """How one question fared: responses seen, correct ones, traces kept, and why it was dropped if it was."""

    responses: int = 0
    correct: int = 0
    kept: int = 0
    majority: str | None = None
    gold_disagrees: bool = False  # majority mode: the agreed answer is not the gold answer
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


class NothingKept(UserError):
    """No question kept a trace set: exit non-zero (the output and summary are written first)."""

    def __init__(self, message: str, result: FilterResult) -> None:
        super().__init__(message)
        self.result = result


def trace_text(r: TeacherResponse, separator: str = "\n</think>\n\n") -> str:
    """The text that follows the forking token for one response (see the module docstring)."""
    content = (r.text or "").strip()
    if r.reasoning and r.reasoning.strip():
        return r.reasoning.strip() + separator + content
    if content.startswith("<think>"):
        content = content[len("<think>"):].lstrip()
    return content


def run_filter(cfg: FilterConfig) -> FilterResult:
    """Write the trace sets and ``<out>.summary.json``; raise :class:`NothingKept` when no question kept any."""
    cfg.validate()
    from forkctl.tasks import get_task

    task = get_task(cfg.task, **cfg.task_options())  # type: ignore[arg-type]
    questions = task.load()[: cfg.limit]
    by_question, teachers = _group(Path(cfg.traces), {q.id for q in questions})  # type: ignore[arg-type]
    per_teacher: dict[str, Counter] = {t: Counter() for t in teachers}
    per_question: dict[str, QuestionOutcome] = {}
    candidates: dict[str, list[TeacherResponse]] = {}
    voters: dict[str, int] = {}
    for q in questions:
        rs = by_question.get(q.id, [])
        per_question[q.id] = QuestionOutcome(responses=len(rs))
        candidates[q.id] = [r for r in rs if _usable(r, per_teacher[r.teacher])]
        voters[q.id] = sum(1 for r in rs if not _failed(r))  # every model output votes, truncated ones too
    correct, agreed = _judge(cfg, task, questions, candidates, voters, per_teacher, per_question)
    counter = _TokenCounter(cfg.tokenizer, cfg.max_tokens)
    trace_sets = []
    for q in questions:
        kept = _select(cfg, correct.get(q.id, []), teachers, per_teacher, counter)
        outcome = per_question[q.id]
        if len(kept) < cfg.min_traces:
            for r in kept:
                per_teacher[r.teacher]["too_few"] += 1
            outcome.note = outcome.note or _why_dropped(outcome)
            continue
        outcome.kept = len(kept)
        for r in kept:
            per_teacher[r.teacher]["kept"] += 1
        # The answer the kept traces reach: the gold one in reference mode, the agreed one in majority mode.
        answer = agreed.get(q.id, q.answer)
        trace_sets.append(TraceSet(id=q.id, problem=q.problem, answer=answer,
                                   traces=[Trace(teacher=r.teacher, text=trace_text(r, cfg.reasoning_separator))
                                           for r in kept]))
    out = Path(cfg.out)
    write_records(out, trace_sets)
    summary_path = write_run_config(out.with_name(out.stem + ".summary.json"), "filter", cfg, _fingerprint(cfg),
                                    extra={"per_teacher": {t: dict(c) for t, c in per_teacher.items()},
                                           "per_question": {k: asdict(v) for k, v in per_question.items()}})
    result = FilterResult(out, summary_path, trace_sets, per_teacher, per_question)
    _warn_gold_disagreements(questions, result)
    if not trace_sets:
        console.show(*summary_tables(result))
        raise NothingKept(f"filter kept no trace sets: {_dropped_line(result)} (see {summary_path})", result)
    return result


def _fingerprint(cfg: FilterConfig) -> dict[str, Any]:
    """What decides the output: the traces file as it is now, and every setting but where to write."""
    settings = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in ("out", "quiet", "overwrite")}
    return {**settings, "traces": file_identity(cfg.traces)}  # type: ignore[arg-type]


def _why_dropped(outcome: QuestionOutcome) -> str:
    if outcome.responses == 0:
        return "no responses"
    if outcome.correct == 0:
        return "no correct traces"
    return "too few traces"


def _dropped_line(result: FilterResult) -> str:
    """'3 no majority, 1 no responses' over the dropped questions."""
    dropped = Counter(o.note or "dropped" for o in result.per_question.values() if o.kept == 0)
    return ", ".join(f"{n} {why}" for why, n in dropped.most_common())


def _warn_gold_disagreements(questions: list[Question], result: FilterResult) -> None:
    gold = {q.id: q.answer for q in questions}
    bad = [(qid, o) for qid, o in result.per_question.items() if o.gold_disagrees and o.kept]
    if bad:
        qid, o = bad[0]
        console.warn(f"{len(bad)} question(s) kept by majority disagree with their gold answer (e.g. {qid}: "
                     f"majority {o.majority!r}, gold {gold[qid]!r}); their trace sets carry the majority answer: "
                     f"check those gold answers, or use --mode reference")


def _group(path: Path, question_ids: set[str]) -> tuple[dict[str, list[TeacherResponse]], list[str]]:
    """Records by question (the last record of a repeated key wins), and teachers in the teachers file's order."""
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
                          f"(first: {unknown[0]!r}); pass the questions (and --limit) the traces were collected for")
    order = teacher_order(path, {r.teacher for r in latest.values()})
    by_question: dict[str, list[TeacherResponse]] = defaultdict(list)
    for r in sorted(latest.values(), key=lambda r: (order.index(r.teacher), r.sample)):
        by_question[r.question_id].append(r)
    return by_question, order


def _failed(r: TeacherResponse) -> bool:
    return r.error is not None or not (r.text or r.reasoning or "").strip()


def _usable(r: TeacherResponse, counts: Counter) -> bool:
    if _failed(r):
        counts["failed"] += 1
        return False
    if r.finish_reason == "length":
        counts["truncated"] += 1
        return False
    return True


def _judge(cfg: FilterConfig, task: Any, questions: list[Question], candidates: dict[str, list[TeacherResponse]],
           voters: dict[str, int], per_teacher: dict[str, Counter], per_question: dict[str, QuestionOutcome]
           ) -> tuple[dict[str, list[TeacherResponse]], dict[str, str | None]]:
    """The correct candidates of each question, judged by the task in one batch over all questions (the text
    judged is the trace text: reasoning, then content, so the last answer stated wins); and, in majority mode,
    the answer they agree on."""
    todo = [q for q in questions if candidates[q.id]]
    scores = task.score([(q, [trace_text(r, cfg.reasoning_separator) for r in candidates[q.id]]) for q in todo])
    correct: dict[str, list[TeacherResponse]] = {}
    agreed: dict[str, str | None] = {}
    for q, scored in zip(todo, scores):
        outcome = per_question[q.id]
        if cfg.mode == "reference":
            ok = [s.correct is True for s in scored]
            if all(s.correct is None for s in scored):
                outcome.note = "no gold answer"
        else:
            ok = _majority([s.answer_class for s in scored], voters[q.id], cfg.quorum, cfg.min_votes)
            if any(ok):
                member = scored[ok.index(True)]
                outcome.majority = agreed[q.id] = member.answer
                outcome.gold_disagrees = member.correct is False  # False only when there is a gold answer
            else:
                outcome.note = "no majority"
        rs = candidates[q.id]
        for r, good in zip(rs, ok):
            if not good:
                per_teacher[r.teacher]["wrong"] += 1
        correct[q.id] = [r for r, good in zip(rs, ok) if good]
        outcome.correct = len(correct[q.id])
    return correct, agreed


def _majority(classes: list[int | None], voters: int, quorum: float, min_votes: int) -> list[bool]:
    """Members of the single largest answer class, if it has at least ``min_votes`` members and holds at least
    ``quorum`` of all ``voters`` (every response of the question, answered or not: one answer among four
    responses is no majority); a tie for largest means no majority (all False)."""
    sizes = Counter(c for c in classes if c is not None)
    if not sizes:
        return [False] * len(classes)
    (top, n_top), *rest = sizes.most_common()
    if (rest and rest[0][1] == n_top) or n_top < min_votes or n_top / max(voters, 1) < quorum:
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


def summary_tables(result: FilterResult) -> list[Any]:
    """Per teacher: kept / wrong / truncated / failed / duplicate / too long / surplus / too few; per question:
    how many questions kept 0, 1, ..., M traces, and the dropped questions."""
    cols = ("kept", *DROP_REASONS)
    teachers = console.table(f"filter · per teacher · {result.out_path}", ["teacher", *(c.replace("_", " ")
                             for c in cols)], [[name, *(counts.get(c, 0) for c in cols)]
                                               for name, counts in result.per_teacher.items()],
                             right=tuple(range(1, len(cols) + 1)))
    hist = console.table(f"per question · {len(result.trace_sets)} of {len(result.per_question)} kept",
                         ["traces kept", "questions"], [[k, n] for k, n in result.survivors_histogram().items()],
                         right=(0, 1))
    dropped = _dropped_line(result)
    if dropped:
        hist.caption = "dropped: " + dropped
    return [teachers, hist]

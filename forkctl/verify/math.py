"""Math answers: extraction from a response, and equivalence with Math-Verify in a bounded process pool.

Math-Verify's own timeouts use ``signal.alarm``, which only works on the main thread, so they are disabled
(``parsing_timeout=None``, ``timeout_seconds=None``) and each question is judged in a worker process that is
killed if it overruns: a pathological answer can never hang an eval. This module imports no torch, so worker
processes start quickly.
"""

from __future__ import annotations

import atexit
import functools
import logging
import multiprocessing as mp
import re
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# "The final answer is: X", "Answer: X", "**Final Answer:** X": a label, then what follows it (bold marks and
# "is"/":" in any of the forms models write them).
_ANSWER_LABEL = re.compile(r"\b(?:final\s+)?answer\b\**\s*(?:is\b\s*:?|:)\**\s*", re.IGNORECASE)
_HASHES = re.compile(r"^\s*####\s*(\S.*?)\s*$", re.MULTILINE)  # GSM8K's "#### 8"
# A response ending in display math ($$...$$ or \[...\]), optionally with a final period.
_TRAILING_DISPLAY = re.compile(r"(?:\$\$(.+?)\$\$|\\\[(.+?)\\\])\s*\.?\s*$", re.DOTALL)
# The unit right after a label: display math, inline math, bold, else the rest of the line.
_UNIT = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\$(.+?)\$|\\\((.+?)\\\)|\*\*(.+?)\*\*|([^\n]+)", re.DOTALL)


def extract_answer(text: str) -> str | None:
    """The final answer of a response, by priority: the last ``\\boxed{...}``; else the last labelled answer
    ("the answer is X", "final answer: X", "#### X", whichever comes last); else a closing ``$$...$$`` line."""
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip() or None
    labelled = [(m.end(), text[m.end():]) for m in _ANSWER_LABEL.finditer(text)]
    labelled += [(m.start(1), m.group(1)) for m in _HASHES.finditer(text)]
    for _, rest in sorted(labelled, reverse=True):
        answer = _first_unit(rest)
        if answer:
            return answer
    display = _TRAILING_DISPLAY.search(text.strip())
    if display:
        return _clean(display.group(1) or display.group(2)) or None
    return None


def _first_unit(rest: str) -> str | None:
    """The answer written right after a label: ``$8$``, ``$$8$$`` (maybe on a later line), ``**8**`` or ``8.``."""
    m = _UNIT.match(rest.lstrip())
    if m is None:
        return None
    return _clean(next(g for g in m.groups() if g is not None)) or None


def _clean(answer: str) -> str:
    """Strip what wraps an answer but is not part of it: ``\\text{8.}``, bold, dollars, a final period."""
    boxed = _last_boxed(answer)
    s = boxed if boxed is not None else answer
    s = re.sub(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}", r"\1", s)
    s = s.strip().strip("*").strip("$").strip()
    return s.rstrip(".").strip()


def _last_boxed(text: str) -> str | None:
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start:i - 1]
    return None


def normalize(answer: str) -> str:
    """A cheap canonical string: equal strings are surely equivalent answers (the fast path)."""
    s = answer.strip().strip("$").strip()
    s = re.sub(r"\\(?:text|mathrm)\{([^}]*)\}", r"\1", s)
    s = re.sub(r"\\[,;! ]|\s+", "", s)
    s = s.replace("\\left", "").replace("\\right", "").replace("dfrac", "frac").replace("tfrac", "frac")
    return s.rstrip(".")


@dataclass
class Judgement:
    """Per answer of one question: correct against the gold answer (None without gold), and an equivalence
    class id (answers with the same id are the same answer; None = no answer)."""

    correct: list[bool | None]
    classes: list[int | None]


def _parse(answer: str):  # noqa: ANN202 - Math-Verify's parsed list
    from math_verify import parse

    text = answer if ("\\boxed" in answer or "$" in answer) else f"\\boxed{{{answer}}}"
    return parse(text, parsing_timeout=None)


def _equal(a, b) -> bool:  # noqa: ANN001
    from math_verify import verify

    try:
        return bool(verify(a, b, timeout_seconds=None))
    except Exception:  # Math-Verify raises on exotic sympy objects; unequal is the safe reading
        return False


def _judge(gold: str | None, answers: list[str | None], equal: Callable[[str, str], bool]) -> Judgement:
    """Correctness against ``gold`` and equivalence classes (each answer joins the first class whose
    representative it equals), for a given notion of equality (gold / representative first)."""
    reps: list[str] = []
    correct: list[bool | None] = []
    classes: list[int | None] = []
    for ans in answers:
        if ans is None:
            correct.append(False if gold is not None else None)
            classes.append(None)
            continue
        correct.append(None if gold is None else equal(gold, ans))
        cls = next((c for c, rep in enumerate(reps) if equal(rep, ans)), None)
        if cls is None:
            reps.append(ans)
            cls = len(reps) - 1
        classes.append(cls)
    return Judgement(correct, classes)


def judge_answers(gold: str | None, answers: list[str | None]) -> Judgement:
    """Judge a question's answers with Math-Verify in this process (no time bound: call through
    :class:`MathJudge`)."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    parse = functools.lru_cache(maxsize=None)(_parse)

    def equal(a: str, b: str) -> bool:
        return normalize(a) == normalize(b) or _equal(parse(a), parse(b))

    return _judge(gold, answers, equal)


def judge_answers_by_string(gold: str | None, answers: list[str | None]) -> Judgement:
    """The fallback when Math-Verify overruns: normalised string equality."""
    return _judge(gold, answers, lambda a, b: normalize(a) == normalize(b))


def _warm_up() -> None:
    import math_verify  # noqa: F401


class MathJudge:
    """Judges many questions in a process pool; a question that overruns its time budget is judged by
    normalised string equality instead, and the stuck worker is killed."""

    def __init__(self, workers: int = 2, timeout_s: float = 20.0, per_answer_s: float = 2.0) -> None:
        self.workers, self.timeout_s, self.per_answer_s = workers, timeout_s, per_answer_s
        self._executor: ProcessPoolExecutor | None = None
        self.timeouts = 0

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn: workers must not inherit the parent's torch threads or CUDA state
            self._executor = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))
            # Start the workers and import Math-Verify before any time budget runs.
            for fut in [self._executor.submit(_warm_up) for _ in range(self.workers)]:
                fut.result()
        return self._executor

    def _kill(self) -> None:
        if self._executor is not None:
            for proc in list(getattr(self._executor, "_processes", {}).values()):
                proc.kill()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def judge_many(self, items: list[tuple[str | None, list[str | None]]]) -> list[Judgement]:
        results: list[Judgement | None] = [None] * len(items)
        # Questions whose answers are all missing need no worker.
        todo = []
        for i, (gold, answers) in enumerate(items):
            if all(a is None for a in answers):
                results[i] = judge_answers_by_string(gold, answers)
            else:
                todo.append(i)
        while todo:
            todo = self._run_round(items, todo, results)
        return results  # type: ignore[return-value]

    def _run_round(self, items: list[tuple[str | None, list[str | None]]], todo: list[int],
                   results: list[Judgement | None]) -> list[int]:
        """Run ``todo`` until all finish or one overruns; return what must be resubmitted."""
        pool = self._pool()
        futures: dict[Future, int] = {pool.submit(judge_answers, *items[i]): i for i in todo}
        started: dict[Future, float] = {}
        while futures:
            done, _ = wait(futures, timeout=0.05, return_when=FIRST_COMPLETED)
            for fut in done:
                i = futures.pop(fut)
                try:
                    results[i] = fut.result()
                except Exception as exc:  # a worker crash must not lose the eval
                    log.warning("Math-Verify failed on question %d (%s); using string equality", i, exc)
                    results[i] = judge_answers_by_string(*items[i])
            now = time.monotonic()
            for fut, i in futures.items():
                if fut.running():
                    started.setdefault(fut, now)
                    budget = self.timeout_s + self.per_answer_s * len(items[i][1])
                    if now - started[fut] > budget:
                        self.timeouts += 1
                        log.warning("Math-Verify overran %.0fs on question %d; using string equality", budget, i)
                        results[i] = judge_answers_by_string(*items[i])
                        self._kill()
                        return [j for f, j in futures.items() if f is not fut]
        return []


_JUDGE: MathJudge | None = None


def get_math_judge() -> MathJudge:
    """The process-wide judge (its pool starts on first use and is shut down at exit)."""
    global _JUDGE
    if _JUDGE is None:
        _JUDGE = MathJudge()
        atexit.register(_JUDGE.close)
    return _JUDGE

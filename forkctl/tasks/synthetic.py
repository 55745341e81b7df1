"""The built-in synthetic multi-strategy task: a controlled world where forking-token claims are measurable on a CPU.

Question: labelled digits, answer = the last digit of their sum::

    sum mod 10: a3 b4 c5 d1                      -> 3

Three strategies reach the same answer through visibly different reasoning:

- ``forward`` (long, easy): one step per item, carrying the running sum mod 10. Length grows with the input
  (4 tokens per item), so under a length budget (``max_new_tokens``) it overruns on long questions::

      a3=3 b4=7 c5=2 d1=3 answer=3

- ``backward`` (long, easy): the same steps from the last item to the first, a different running sum. Same
  length profile as forward, visibly different order::

      d1=1 c5=6 b4=0 a3=3 answer=3

- ``direct`` (short, hard): count the items, then answer in one shot (easy for 2 items, near chance for 8)::

      4 numbers, answer=3

Questions have 2..8 digits by default (up to 12 with ``max_items``). So which strategy is best depends on the question
(its length against the budget, e.g. ``max_new_tokens`` 20), which ``gfpo`` exploits. (A ``pairs`` strategy, one step
per pair of items without writing their values, was dropped: a ~1 M-parameter model never learned two look-ups
in one unsupervised step, so its accuracy stayed at chance and varied from run to run.)
:func:`classify` names the strategy of any text from its structure (the order and arity of its steps), or
``unknown``; :func:`check` extracts and judges the answer. Questions are split into train and test by a hash of
their text, so the registered benchmark ``synthetic`` (held-out questions) never overlaps training data written by
:func:`write_trace_sets` / ``forkctl synthetic-data``.
"""

from __future__ import annotations

from forkctl.errors import UserError
import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from forkctl.tasks.base import Scored, Task
from forkctl.records import Question, Trace, TraceSet, write_records

STRATEGIES = ("forward", "backward", "direct")
LETTERS = "abcdefghijkl"
MIN_ITEMS, MAX_ITEMS = 2, len(LETTERS)
DEFAULT_MAX_ITEMS = 8  # the default question length range is 2..8 digits (up to 12 possible)
PROBLEM_PREFIX = "sum mod 10:"
TEST_FRACTION_MOD = 10  # a question is held-out (test) when hash(problem) % 10 == 0

_ANSWER_RE = re.compile(r"answer=(\d+)")
_FINAL_RE = re.compile(r"answer=\d+")
_PROBLEM_RE = re.compile(r"([a-l])(\d)")
_STEP = re.compile(r"^([a-l])(\d)=(\d)$")
_DIRECT_STEP = re.compile(r"^(\d+) numbers,$")
_DIRECT_STEP_JOIN = re.compile(r"(\d+) numbers,")


@dataclass
class Problem:
    values: list[int]

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.values)]

    @property
    def text(self) -> str:
        return PROBLEM_PREFIX + " " + " ".join(f"{c}{v}" for c, v in zip(self.letters, self.values))

    @property
    def answer(self) -> int:
        return sum(self.values) % 10

    @property
    def is_test(self) -> bool:
        return is_test_problem(self.text)


def is_test_problem(text: str) -> bool:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % TEST_FRACTION_MOD == 0


def parse_problem(text: str) -> Problem:
    """The digits of a problem text written by :class:`Problem`."""
    if not text.startswith(PROBLEM_PREFIX):
        raise UserError(f"not a synthetic problem: {text[:40]!r}")
    return Problem([int(v) for _, v in _PROBLEM_RE.findall(text[len(PROBLEM_PREFIX):])])


def solve(problem: Problem, strategy: str) -> str:
    """The reasoning trace of ``strategy`` for ``problem`` (always correct)."""
    vals, letters = problem.values, problem.letters
    if strategy in ("forward", "backward"):
        items = list(zip(letters, vals))
        if strategy == "backward":
            items.reverse()
        steps, acc = [], 0
        for c, v in items:
            acc = (acc + v) % 10
            steps.append(f"{c}{v}={acc}")
        return " ".join(steps) + f" answer={problem.answer}"
    if strategy == "direct":
        return f"{len(vals)} numbers, answer={problem.answer}"
    raise UserError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")


def classify(text: str) -> str:
    """The strategy of a generated text, judged from its structure only (not its correctness); else "unknown".

    forward: steps ``Xv=s`` over consecutive letters from ``a`` up; backward: the same steps over consecutive letters
    down to ``a`` (a truncated one: down from a letter after ``a``); direct: ``k numbers,`` then the answer. A
    truncated text (no final answer) is still classified by the steps it has, as long as it has at least one
    complete step.
    """
    text = text.strip()
    if not text:
        return "unknown"
    parts = _DIRECT_STEP_JOIN.sub(r"\1_numbers,", text).split()
    parts = [p.replace("_numbers,", " numbers,") for p in parts]
    has_answer = _FINAL_RE.fullmatch(parts[-1]) is not None
    steps = parts[:-1] if has_answer else parts
    if not has_answer and steps and not _complete_step(steps[-1]):
        steps = steps[:-1]  # an unfinished last step of a truncated text
    if not steps:
        return "unknown"
    if len(steps) == 1 and _DIRECT_STEP.match(steps[0]):
        return "direct" if has_answer else "unknown"
    matches = [_STEP.match(s) for s in steps]
    if not all(matches):
        return "unknown"
    letters = "".join(m.group(1) for m in matches)
    if letters == LETTERS[: len(letters)]:
        return "forward"
    down = LETTERS[: LETTERS.index(letters[0]) + 1][::-1]
    if letters[0] != "a" and (letters == down if has_answer else down.startswith(letters)):
        return "backward"
    return "unknown"


def _complete_step(step: str) -> bool:
    return bool(_STEP.match(step) or _DIRECT_STEP.match(step))


def extract_answer(text: str) -> str | None:
    """The last ``answer D`` of a text, as a string of digits, or None."""
    found = _ANSWER_RE.findall(text)
    return found[-1] if found else None


def check(problem_text: str, text: str, expected: str | None = None) -> tuple[str | None, bool]:
    """(extracted answer, correct) for a response to a synthetic problem."""
    answer = extract_answer(text)
    truth = expected if expected is not None else str(parse_problem(problem_text).answer)
    return answer, answer is not None and int(answer) == int(truth)


# --------------------------------------------------------------------------------------------------
# Generation of questions and training data


def generate_problems(count: int, seed: int = 0, split: str = "train", min_items: int = MIN_ITEMS,
                      max_items: int = DEFAULT_MAX_ITEMS) -> list[Problem]:
    """``count`` distinct problems of ``split`` (train or test: disjoint by a hash of the text), lengths uniform in
    [min_items, max_items]. Deterministic in ``seed``."""
    if not MIN_ITEMS <= min_items <= max_items <= MAX_ITEMS:
        raise UserError(f"items per question must satisfy {MIN_ITEMS} <= min <= max <= {MAX_ITEMS}, "
                         f"got {min_items}..{max_items}")
    if split not in {"train", "test"}:
        raise UserError(f"split must be train or test, got {split!r}")
    rng = random.Random(f"synthetic|{seed}|{split}")
    seen: set[str] = set()
    out: list[Problem] = []
    attempts = 0
    while len(out) < count:
        attempts += 1
        if attempts > 200 * count + 10_000:
            raise UserError(f"could not draw {count} distinct {split} questions with {min_items}..{max_items} items")
        p = Problem([rng.randint(0, 9) for _ in range(rng.randint(min_items, max_items))])
        if p.text in seen or p.is_test != (split == "test"):
            continue
        seen.add(p.text)
        out.append(p)
    return out


def trace_set(problem: Problem, qid: str, strategies: tuple[str, ...] = STRATEGIES,
              rng: random.Random | None = None) -> TraceSet:
    """A trace set with one trace per strategy (in a random order when ``rng`` is given: real trace sets carry
    no consistent order, and a fixed one would let tie-breaking fake a specialisation)."""
    order = list(strategies)
    if rng is not None:
        rng.shuffle(order)
    traces = [Trace(teacher="synthetic", text=solve(problem, s), extra={"strategy": s}) for s in order]
    return TraceSet(id=qid, problem=problem.text, answer=str(problem.answer), traces=traces,
                    extra={"num_items": len(problem.values)})


def write_trace_sets(out: str | Path, questions: int = 2000, seed: int = 0, strategies: list[str] | None = None,
                     min_items: int = MIN_ITEMS, max_items: int = DEFAULT_MAX_ITEMS, shuffle: bool = True) -> Path:
    """Write a trace-set JSONL of training (never held-out) questions, one trace per strategy each."""
    strats = tuple(strategies or STRATEGIES)
    for s in strats:
        if s not in STRATEGIES:
            raise UserError(f"unknown strategy {s!r}; use one of {', '.join(STRATEGIES)}")
    if questions < 1:
        raise UserError(f"--questions must be >= 1, got {questions}")
    rng = random.Random(f"order|{seed}")
    problems = generate_problems(questions, seed, "train", min_items, max_items)
    path = Path(out)
    write_records(path, [trace_set(p, f"syn-train-{seed}-{i}", strats, rng if shuffle else None)
                         for i, p in enumerate(problems)])
    return path


def corpus(num_questions: int = 3000, seed: int = 0) -> list[str]:
    """Text for training a task-fitted tokenizer: problems and every strategy's traces."""
    lines = ["user assistant system"] * 200  # the chat markup words, so the template tokenises compactly
    for p in generate_problems(num_questions, seed, "train", max_items=MAX_ITEMS) + \
            generate_problems(num_questions // 9, seed, "test", max_items=MAX_ITEMS):
        lines.append(p.text)
        lines.extend(solve(p, s) for s in STRATEGIES)
    return lines


def build_synthetic_model(out_dir: str | Path, num_forks: int = 3, hidden_size: int = 128, num_layers: int = 4,
                          num_heads: int = 4, intermediate_size: int = 512, vocab_size: int = 320,
                          seed: int = 0) -> Path:
    """A fresh tiny Qwen2 (~1 M parameters) with a tokenizer fitted to this task (each letter and digit is a token)
    and ``num_forks`` forking tokens: the base the synthetic experiment trains from."""
    from forkctl.toy import build_toy_model

    return build_toy_model(out_dir, num_forks=num_forks, hidden_size=hidden_size, num_layers=num_layers,
                           num_heads=num_heads, num_kv_heads=max(1, num_heads // 2),
                           intermediate_size=intermediate_size, vocab_size=vocab_size, max_positions=512,
                           seed=seed, corpus=corpus(seed=seed))


# --------------------------------------------------------------------------------------------------
# The benchmark


class SyntheticTask(Task):
    """Synthetic questions (held-out ``test`` split by default); each scored sample records its detected
    ``strategy`` and ``num_items``."""

    def __init__(self, name: str = "synthetic", count: int = 300, seed: int = 0, min_items: int = MIN_ITEMS,
                 max_items: int = DEFAULT_MAX_ITEMS, split: str = "test") -> None:
        self.name, self.count, self.seed, self.split = name, count, seed, split
        self.min_items, self.max_items = min_items, max_items

    def load(self) -> list[Question]:
        return [Question(id=f"syn-{self.split}-{self.seed}-{i}", problem=p.text, answer=str(p.answer),
                         extra={"num_items": len(p.values)})
                for i, p in enumerate(generate_problems(self.count, self.seed, self.split, self.min_items,
                                                        self.max_items))]

    def extract_answer(self, text: str) -> str | None:
        return extract_answer(text)

    def score(self, items: list[tuple[Question, list[str]]]) -> list[list[Scored]]:
        out = []
        for q, texts in items:
            n = len(parse_problem(q.problem).values)
            row = []
            for t in texts:
                answer, correct = check(q.problem, t, q.answer)
                row.append(Scored(answer, correct, None if answer is None else int(answer),
                                  {"strategy": classify(t), "num_items": n}))
            out.append(row)
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "source": "forkctl.tasks.synthetic", "count": self.count,
                "seed": self.seed, "split": self.split, "items": [self.min_items, self.max_items]}


def held_out(**_: Any) -> SyntheticTask:
    return SyntheticTask()


def train_split(**_: Any) -> SyntheticTask:
    """Training questions with answers (never held-out ones) for RL, e.g. ``forkctl gfpo --task synthetic-train``."""
    return SyntheticTask("synthetic-train", count=2000, seed=1, split="train")


# --------------------------------------------------------------------------------------------------
# The choice task: the best forking token depends on the question (issue 10)
#
# Question: a keyword and 3..6 digits whose first and last differ; the answer is the digit the keyword names::
#
#     first of: 3 7 2 9        -> 3
#     last of: 3 7 2 9         -> 9
#
# Two modes answer differently, whatever the keyword says: ``front`` copies the first digit, ``back`` the last::
#
#     front=3 answer=3            back=9 answer=9
#
# Trace sets hold one trace of each mode for every question (one of them wrong), so SSFT ties each forking token to
# a mode, not to the keyword: after SSFT each fixed token is right on one half of the questions (those whose keyword
# names its mode) and ~50% overall, while choosing per question (by the keyword) scores ~100%. Both modes are a
# single look-up, so a ~1 M-parameter model learns them in a few hundred SSFT steps on a CPU.

CHOICE_KEYWORDS = {"first": "front", "last": "back"}  # keyword -> the mode that answers it right
CHOICE_MODES = ("front", "back")
CHOICE_MIN_DIGITS, CHOICE_MAX_DIGITS = 3, 6
_CHOICE_RE = re.compile(r"(first|last) of: ((?:\d ?)+)")
_CHOICE_TRACE = re.compile(r"^(front|back)=(\d) answer=(\d)$")


@dataclass
class ChoiceProblem:
    keyword: str
    digits: list[int]

    @property
    def text(self) -> str:
        return f"{self.keyword} of: " + " ".join(map(str, self.digits))

    @property
    def answer(self) -> int:
        return self.digits[0] if self.keyword == "first" else self.digits[-1]

    @property
    def right_mode(self) -> str:
        """The mode that starts at the end the keyword names (choice: the right one; walk: the short one)."""
        return CHOICE_KEYWORDS[self.keyword]


def find_choice(text: str) -> ChoiceProblem | None:
    """The first/last-of problem inside a text (a user message may hold more than the problem), or None."""
    m = _CHOICE_RE.search(text)
    return ChoiceProblem(m.group(1), [int(d) for d in m.group(2).split()]) if m else None


def parse_choice(text: str) -> ChoiceProblem:
    m = _CHOICE_RE.fullmatch(text.strip())
    if not m:
        raise UserError(f"not a first/last-of problem: {text[:40]!r}")
    return ChoiceProblem(m.group(1), [int(d) for d in m.group(2).split()])


def solve_choice(problem: ChoiceProblem, mode: str) -> str:
    """The trace of ``mode`` (right only when the keyword names that mode)."""
    if mode not in CHOICE_MODES:
        raise UserError(f"unknown mode {mode!r}; use one of {', '.join(CHOICE_MODES)}")
    d = problem.digits[0] if mode == "front" else problem.digits[-1]
    return f"{mode}={d} answer={d}"


def classify_choice(text: str) -> str:
    m = _CHOICE_TRACE.match(text.strip())
    return m.group(1) if m else "unknown"


@dataclass(frozen=True)
class KeywordFamily:
    """A task of first/last-of questions: its name, the id prefix, the digits per question, and the modes its
    traces take (how each is written, and how a generated text is recognised). synthetic-choice here,
    synthetic-walk (the embedded toy) in :mod:`forkctl.tasks.walk`."""

    name: str
    prefix: str
    min_digits: int
    max_digits: int
    solve: Callable[[ChoiceProblem, str], str]
    classify: Callable[[str], str]
    modes: tuple[str, ...] = CHOICE_MODES


CHOICE = KeywordFamily("synthetic-choice", "choice", CHOICE_MIN_DIGITS, CHOICE_MAX_DIGITS, solve_choice,
                       classify_choice)


def generate_choice_problems(count: int, seed: int = 0, split: str = "train",
                             family: KeywordFamily = CHOICE) -> list[ChoiceProblem]:
    """``count`` distinct problems of ``split`` (train/test disjoint by a hash of the text), keywords alternating
    so every split is balanced. Deterministic in ``seed``."""
    if split not in {"train", "test"}:
        raise UserError(f"split must be train or test, got {split!r}")
    rng = random.Random(f"{family.name}|{seed}|{split}")
    seen: set[str] = set()
    out: list[ChoiceProblem] = []
    for _ in range(200 * count + 10_000):
        if len(out) == count:
            return out
        digits = [rng.randint(0, 9) for _ in range(rng.randint(family.min_digits, family.max_digits))]
        p = ChoiceProblem(("first", "last")[len(out) % 2], digits)
        if digits[0] == digits[-1] or p.text in seen or is_test_problem(p.text) != (split == "test"):
            continue  # equal ends: both modes would answer alike, and the question would not discriminate
        seen.add(p.text)
        out.append(p)
    raise UserError(f"could not draw {count} distinct {split} {family.name} questions")


def write_choice_trace_sets(out: str | Path, questions: int = 2000, seed: int = 0,
                            family: KeywordFamily = CHOICE) -> Path:
    """Trace sets of training questions: one trace per mode each, in a shuffled order."""
    if questions < 1:
        raise UserError(f"--questions must be >= 1, got {questions}")
    rng = random.Random(f"{family.prefix}-order|{seed}")
    sets = []
    for i, p in enumerate(generate_choice_problems(questions, seed, "train", family)):
        modes = list(family.modes)
        rng.shuffle(modes)
        traces = [Trace(teacher="synthetic", text=family.solve(p, m), extra={"strategy": m}) for m in modes]
        sets.append(TraceSet(id=f"{family.prefix}-train-{seed}-{i}", problem=p.text, answer=str(p.answer),
                             traces=traces, extra={"keyword": p.keyword}))
    path = Path(out)
    write_records(path, sets)
    return path


def choice_corpus(num_questions: int = 2000, seed: int = 0, family: KeywordFamily = CHOICE) -> list[str]:
    lines = ["user assistant system"] * 200
    for p in generate_choice_problems(num_questions, seed, "train", family) + \
            generate_choice_problems(num_questions // 9, seed, "test", family):
        lines.append(p.text)
        lines.extend(family.solve(p, m) for m in family.modes)
    return lines


def build_choice_model(out_dir: str | Path, num_forks: int = 2, hidden_size: int = 128, num_layers: int = 2,
                       seed: int = 0, family: KeywordFamily = CHOICE) -> Path:
    """A fresh tiny Qwen2 (~0.5 M parameters) with a tokenizer fitted to the family's questions and traces."""
    from forkctl.toy import build_toy_model

    return build_toy_model(out_dir, num_forks=num_forks, hidden_size=hidden_size, num_layers=num_layers,
                           num_heads=4, num_kv_heads=2, intermediate_size=4 * hidden_size, vocab_size=320,
                           max_positions=256, seed=seed, corpus=choice_corpus(seed=seed, family=family))


class ChoiceTask(Task):
    """Questions of a keyword family (held-out ``test`` split by default); each scored sample records its
    ``strategy`` (a mode, or unknown), the question's ``keyword`` and ``right_mode``."""

    def __init__(self, name: str = "synthetic-choice", count: int = 300, seed: int = 0, split: str = "test",
                 family: KeywordFamily = CHOICE) -> None:
        self.name, self.count, self.seed, self.split, self.family = name, count, seed, split, family

    def load(self) -> list[Question]:
        return [Question(id=f"{self.family.prefix}-{self.split}-{self.seed}-{i}", problem=p.text,
                         answer=str(p.answer), extra={"keyword": p.keyword, "right_mode": p.right_mode})
                for i, p in enumerate(generate_choice_problems(self.count, self.seed, self.split, self.family))]

    def extract_answer(self, text: str) -> str | None:
        return extract_answer(text)

    def score(self, items: list[tuple[Question, list[str]]]) -> list[list[Scored]]:
        out = []
        for q, texts in items:
            p = parse_choice(q.problem)
            row = []
            for t in texts:
                answer = extract_answer(t)
                correct = answer is not None and int(answer) == int(q.answer)
                row.append(Scored(answer, correct, None if answer is None else int(answer),
                                  {"strategy": self.family.classify(t), "keyword": p.keyword,
                                   "right_mode": p.right_mode}))
            out.append(row)
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.family.solve.__module__, "count": self.count, "seed": self.seed,
                "split": self.split}


def choice_held_out(**_: Any) -> ChoiceTask:
    return ChoiceTask()


def choice_train_split(**_: Any) -> ChoiceTask:
    """Training questions for GFPO (``forkctl gfpo --task synthetic-choice-train``); never held-out ones."""
    return ChoiceTask("synthetic-choice-train", count=2000, seed=1, split="train")

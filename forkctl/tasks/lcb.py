"""LiveCodeBench code generation: questions (a local file or the Hub release shards), LiveCodeBench's prompt,
and the judge (:mod:`forkctl.verify.code`: official semantics by default, ``fixed`` behind a switch).

Hub: ``livecodebench/code_generation_lite`` is read through ``datasets``' JSON builder from the release's shards
(its loading script fails with ``datasets>=4``): ``release_vN`` = ``test.jsonl`` … ``testN.jsonl`` (cumulative,
as upstream's version tags), ``vN`` = that one shard. Private tests are JSON, or base64 → zlib → pickle → JSON;
the pickle is read by an unpickler that refuses every global, so only plain data can come out of it.
Dates: ``start_date <= contest_date < end_date`` (ISO dates; the DeepSeek-R1 window 2024-08-01 … 2025-02-01 is
the ``lcb_v5`` default).
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import re
import zlib
from pathlib import Path
from typing import Any

from forkctl.errors import UserError
from forkctl.records import Question, read_records
from forkctl.tasks.base import Scored, Task
from forkctl.verify.code import DEFAULT_TIMEOUT, CodeGrader, CodeProblem, extract_code

DATA_DIR_ENV = "FORKCTL_DATA_DIR"
HUB_ID = "livecodebench/code_generation_lite"
R1_WINDOW = ("2024-08-01", "2025-02-01")

# LiveCodeBench's generic prompt (lcb_runner/prompts/code_generation.py), the user turn.
WITH_STARTER = ("You will use the following starter code to write the solution to the problem and enclose your "
                "code within delimiters.")
WITHOUT_STARTER = ("Read the inputs from stdin solve the problem and write the answer to stdout (do not directly "
                   "test on the sample inputs). Enclose your code within delimiters as follows. Ensure that when "
                   "the python program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.")


def build_prompt(problem: str, starter_code: str | None) -> str:
    """The question as LiveCodeBench words it, with or without starter code."""
    text = f"### Question:\n{problem}\n\n"
    if starter_code:
        text += f"### Format: {WITH_STARTER}\n```python\n{starter_code}\n```\n\n"
    else:
        text += f"### Format: {WITHOUT_STARTER}\n```python\n# YOUR CODE HERE\n```\n\n"
    return text + "### Answer: (use the provided format with backticks)\n\n"


class _PlainDataUnpickler(pickle.Unpickler):
    """Admits only what pickle builds without globals (str, bytes, numbers, lists, dicts, tuples, None)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refused global {module}.{name} in private tests")


def decode_private_tests(blob: str) -> list[dict[str, Any]]:
    if not blob:
        return []
    try:
        return json.loads(blob)
    except ValueError:
        pass
    data = _PlainDataUnpickler(io.BytesIO(zlib.decompress(base64.b64decode(blob.encode())))).load()
    return json.loads(data) if isinstance(data, (str, bytes)) else data


def shard_names(release: str) -> list[str]:
    m = re.fullmatch(r"(release_)?v(\d+)", release)
    if not m:
        raise UserError(f"unknown LiveCodeBench release {release!r}: use release_vN (cumulative) or vN (one shard)")
    n = int(m.group(2))
    name = lambda i: "test.jsonl" if i == 1 else f"test{i}.jsonl"  # noqa: E731
    return [name(i) for i in range(1, n + 1)] if m.group(1) else [name(n)]


class LCBTask(Task):
    """Code questions judged by running the programs. ``grader``: ``official`` or ``fixed``."""

    def __init__(self, name: str = "lcb", local_file: str | Path | None = None, release: str = "release_v5",
                 start_date: str | None = None, end_date: str | None = None, grader: str = "official",
                 timeout: float = DEFAULT_TIMEOUT, workers: int | None = None, hub_root: str | None = None) -> None:
        self.name, self.local_file, self.release = name, local_file, release
        self.start_date, self.end_date = start_date, end_date
        self.hub_root = hub_root or f"hf://datasets/{HUB_ID}"
        self.grader = CodeGrader(mode=grader, timeout=timeout, workers=workers)
        self.source, self.count, self.private_tests = "", 0, False

    def prompt(self, q: Question) -> str:
        return build_prompt(q.problem, _field(q, "starter_code"))

    def extract_answer(self, text: str) -> str | None:
        return extract_code(text) or None

    def user_message(self, question: Question, template: str | None = None) -> str:
        """LiveCodeBench's prompt (it depends on the starter code), unless the user gives a template."""
        return template.replace("{problem}", question.problem) if template else self.prompt(question)

    def load(self) -> list[Question]:
        if self.local_file is not None:
            questions = read_records(self.local_file, Question)
            self.source = str(self.local_file)
            self.private_tests = any(_field(q, "has_private_tests") for q in questions)
        else:
            questions = self._load_hub()
        questions = [q for q in questions if self._in_window(_field(q, "contest_date"))]
        for q in questions:  # the eval stage renders ``prompt_template``; the full LCB prompt travels with it
            q.extra.setdefault("prompt", self.prompt(q))
        self.count = len(questions)
        return questions

    def _in_window(self, date: str | None) -> bool:
        if date is None or (self.start_date is None and self.end_date is None):
            return True
        day = date[:10]
        return (self.start_date is None or self.start_date <= day) and (self.end_date is None or day < self.end_date)

    def _load_hub(self) -> list[Question]:
        files = [f"{self.hub_root.rstrip('/')}/{name}" for name in shard_names(self.release)]
        try:
            from datasets import load_dataset

            rows = load_dataset("json", data_files=files, split="train")
        except Exception as exc:  # noqa: BLE001 - any failure to reach the data is the user's to fix
            raise UserError(f"could not load {HUB_ID} {self.release} ({type(exc).__name__}); set {DATA_DIR_ENV} "
                            f"to a folder holding lcb_sample.jsonl or pass a code-questions file") from None
        self.source = f"hub:{HUB_ID}:{self.release}"
        questions = [_question_from_row(row, i) for i, row in enumerate(rows)]
        self.private_tests = any(q.extra.get("has_private_tests") for q in questions)
        return questions

    def score(self, items: list[tuple[Question, list[str]]]) -> list[list[Scored]]:
        jobs, shape = [], []
        for q, texts in items:
            problem = CodeProblem(q.tests or [], q.testtype or "stdin", q.fn_name)
            codes = [extract_code(t) for t in texts]
            jobs += [(c, problem) for c in codes]
            shape.append(codes)
        results = iter(self.grader.grade_many(jobs))
        out = []
        for codes in shape:
            row = []
            for code in codes:
                r = next(results)
                row.append(Scored(answer=code or None, correct=r.passed, answer_class=None,
                                  extra={"verdicts": r.verdicts, "grader": self.grader.mode, "error": r.error}))
            out.append(row)
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "release": self.release,
                "window": [self.start_date, self.end_date], "problems": self.count,
                "grader": self.grader.mode, "timeout": self.grader.timeout, "private_tests": self.private_tests}


def _field(q: Question, name: str) -> Any:
    return getattr(q, name, None) if hasattr(q, name) else q.extra.get(name)


def _question_from_row(row: dict[str, Any], i: int) -> Question:
    public = json.loads(row.get("public_test_cases") or "[]")
    private = decode_private_tests(row.get("private_test_cases") or "")
    metadata = json.loads(row.get("metadata") or "{}")
    tests = public + private
    testtype = tests[0].get("testtype", "stdin") if tests else "stdin"
    return Question.from_dict({
        "id": row.get("question_id", i), "problem": row["question_content"],
        "starter_code": row.get("starter_code") or "", "testtype": testtype, "fn_name": metadata.get("func_name"),
        "tests": [{"input": t["input"], "output": t["output"]} for t in tests],
        "contest_date": str(row.get("contest_date") or ""), "platform": row.get("platform"),
        "difficulty": row.get("difficulty"), "title": row.get("question_title"),
        "has_private_tests": bool(private)}, f"{HUB_ID}:row {i + 1}")


def lcb_v5(grader: str = "official", start_date: str | None = None, end_date: str | None = None) -> LCBTask:
    """release_v5 in the DeepSeek-R1 window (2024-08-01 <= contest_date < 2025-02-01) unless dates are given."""
    return LCBTask("lcb_v5", release="release_v5", start_date=start_date or R1_WINDOW[0],
                   end_date=end_date or R1_WINDOW[1], grader=grader)


def lcb_v6(grader: str = "official", start_date: str | None = None, end_date: str | None = None) -> LCBTask:
    return LCBTask("lcb_v6", release="release_v6", start_date=start_date, end_date=end_date, grader=grader)


def lcb_release(release: str, grader: str = "official", start_date: str | None = None,
                end_date: str | None = None) -> LCBTask:
    """Any release tag: ``lcb_release_v4``, ``lcb_v3`` (``forkctl eval --task lcb_release_v4``)."""
    return LCBTask(f"lcb_{release}", release=release, start_date=start_date, end_date=end_date, grader=grader)


def lcb_sample(grader: str = "official", start_date: str | None = None, end_date: str | None = None) -> LCBTask:
    """``$FORKCTL_DATA_DIR/lcb_sample.jsonl``: 279 release_v5 problems of the R1 window, public tests only."""
    directory = os.environ.get(DATA_DIR_ENV)
    if not directory or not Path(directory, "lcb_sample.jsonl").exists():
        raise UserError(f"lcb_sample needs {DATA_DIR_ENV} set to a folder holding lcb_sample.jsonl")
    return LCBTask("lcb_sample", local_file=Path(directory, "lcb_sample.jsonl"), grader=grader,
                   start_date=start_date, end_date=end_date)


def lcb_file(path: str | Path, grader: str = "official", start_date: str | None = None,
             end_date: str | None = None) -> LCBTask:
    return LCBTask(Path(path).stem, local_file=path, grader=grader, start_date=start_date, end_date=end_date)

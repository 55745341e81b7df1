"""Math benchmarks judged with Math-Verify: AIME 2024, AIME 2025, MATH-500, or any questions file.

Each named benchmark loads, in order: ``$FORKCTL_DATA_DIR/<name>.jsonl`` (or ``.parquet``) when that exists, else
the usual Hub dataset via ``datasets.load_dataset``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from forkctl.errors import UserError
from forkctl.tasks.base import Scored, Task
from forkctl.records import Question, read_records
from forkctl.verify.math import extract_answer, get_math_judge

DATA_DIR_ENV = "FORKCTL_DATA_DIR"
# The reference evaluation's math prompt (the authors' lighteval fork, Sheng-J/SSFT: aime_prompt_fn and math_500
# in lighteval/tasks/default_prompts.py, used by their aime24/25 and math_500 tasks), so numbers are comparable.
MATH_PROMPT = ("Solve the following math problem efficiently and clearly.  The last line of your response should be "
               "of the following format: 'Therefore, the final answer is: $\\boxed{ANSWER}$. I hope it is correct' "
               "(without quotes) where ANSWER is just the final number or expression that solves the problem. "
               "Think step by step before answering.\n\n{problem}")


class MathTask(Task):
    prompt_template = MATH_PROMPT

    def __init__(self, name: str, local_file: Path | None = None, hub_id: str | None = None,
                 split: str = "test") -> None:
        self.name, self.local_file, self.hub_id, self.split = name, local_file, hub_id, split
        self.source = ""

    def load(self) -> list[Question]:
        path = self.local_file or _local_copy(self.name)
        if path is not None:
            self.source = str(path)
            return read_records(path, Question)
        if self.hub_id is None:
            raise UserError(f"benchmark {self.name}: no local file")
        self.source = f"hub:{self.hub_id}:{self.split}"
        return _load_from_hub(self.hub_id, self.split)

    def extract_answer(self, text: str) -> str | None:
        return extract_answer(text)

    def score(self, items: list[tuple[Question, list[str]]]) -> list[list[Scored]]:
        answers = [[extract_answer(t) for t in texts] for _, texts in items]
        judgements = get_math_judge().judge_many([(q.answer, a) for (q, _), a in zip(items, answers)])
        return [[Scored(a, c, k) for a, c, k in zip(ans, j.correct, j.classes)]
                for ans, j in zip(answers, judgements)]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source}


def _local_copy(name: str) -> Path | None:
    directory = os.environ.get(DATA_DIR_ENV)
    if not directory:
        return None
    for suffix in (".jsonl", ".parquet"):
        path = Path(directory, name + suffix)
        if path.exists():
            return path
    return None


def _load_from_hub(hub_id: str, split: str) -> list[Question]:
    try:
        from datasets import load_dataset

        rows = load_dataset(hub_id, split=split)
    except Exception as exc:
        raise UserError(f"could not load {hub_id} from the Hugging Face Hub ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); set {DATA_DIR_ENV} to a folder holding "
                         f"a local copy, or pass a questions file") from None
    out = []
    for i, row in enumerate(rows):
        qid = row.get("id", row.get("unique_id", i))
        problem = row.get("problem", row.get("question"))
        out.append(Question.from_dict({"id": qid, "problem": problem, "answer": row.get("answer")},
                                      f"{hub_id}:{split}:row {i + 1}"))
    return out


def aime24(**_: Any) -> MathTask:
    return MathTask("aime24", hub_id="HuggingFaceH4/aime_2024", split="train")


def aime25(**_: Any) -> MathTask:
    return MathTask("aime25", hub_id="yentinglin/aime_2025", split="train")


def math500(**_: Any) -> MathTask:
    return MathTask("math500", hub_id="HuggingFaceH4/MATH-500", split="test")

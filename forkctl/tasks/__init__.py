"""Task registry (lighteval's word): a name maps to ``"module:factory"``, imported only when asked for.

``get_task`` accepts a registered name (``aime24``, ``aime25``, ``math500``, ``synthetic``, ...) or a path to a
JSONL/Parquet file of questions. The registry never imports its members, so members may import ``tasks.base``
freely and listing the names costs nothing.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

from forkctl.errors import UserError
from forkctl.tasks.base import Scored, Task

# name -> "module:factory"; the factory takes no arguments and returns a Task.
REGISTRY: dict[str, str] = {
    "aime24": "forkctl.tasks.math:aime24",
    "aime25": "forkctl.tasks.math:aime25",
    "math500": "forkctl.tasks.math:math500",
    "synthetic": "forkctl.tasks.synthetic:held_out",
    "synthetic-train": "forkctl.tasks.synthetic:train_split",
    "synthetic-choice": "forkctl.tasks.synthetic:choice_held_out",
    "synthetic-choice-train": "forkctl.tasks.synthetic:choice_train_split",
    "synthetic-walk": "forkctl.tasks.walk:held_out",
    "synthetic-walk-train": "forkctl.tasks.walk:train_split",
    "lcb_v5": "forkctl.tasks.lcb:lcb_v5",
    "lcb_v6": "forkctl.tasks.lcb:lcb_v6",
    "lcb_sample": "forkctl.tasks.lcb:lcb_sample",
}


def available() -> list[str]:
    return sorted(REGISTRY)


def get_task(spec: str, **options: Any) -> Task:
    """A registered task by name, or a questions file (JSONL/Parquet): code questions (records with ``tests``)
    are LiveCodeBench-style, any other file is math. ``options`` (``CodeTaskOptions``) reach the tasks that
    take them."""
    if spec in REGISTRY:
        module, factory = REGISTRY[spec].split(":")
        return getattr(importlib.import_module(module), factory)(**options)
    release = re.fullmatch(r"lcb_(?:release_)?(v\d+)", spec)
    if release:  # any LiveCodeBench release tag: lcb_v4 = lcb_release_v4 (cumulative, as upstream's tags)
        from forkctl.tasks.lcb import lcb_release

        return lcb_release(f"release_{release.group(1)}", **options)
    path = Path(spec)
    if path.suffix in {".jsonl", ".json", ".parquet"} or path.exists():
        if not path.exists():
            raise UserError(f"questions file not found: {spec}")
        if _holds_code_questions(path):
            from forkctl.tasks.lcb import lcb_file

            return lcb_file(path, **options)
        from forkctl.tasks.math import MathTask

        return MathTask(name=path.stem, local_file=path)
    raise UserError(f"unknown task {spec!r}: use one of {', '.join(available())}, lcb_release_vN, or a path to "
                    f"a .jsonl/.parquet questions file")


def _holds_code_questions(path: Path) -> bool:
    """Whether the first record of a questions file carries tests (a code question)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return "tests" in pq.read_schema(path).names
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    return "tests" in json.loads(line)
                except (json.JSONDecodeError, TypeError):
                    return False  # the record reader gives the file:line error
    return False


__all__ = ["REGISTRY", "Scored", "Task", "available", "get_task"]

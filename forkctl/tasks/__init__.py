"""Task registry (lighteval's word): a name maps to ``"module:factory"``, imported only when asked for.

``get_task`` accepts a registered name (``aime24``, ``aime25``, ``math500``, ``synthetic``, ...) or a path to a
JSONL/Parquet file of questions. The registry never imports its members, so members may import ``tasks.base``
freely and listing the names costs nothing.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from forkctl.errors import UserError
from forkctl.tasks.base import Scored, Task, user_message

# name -> "module:factory"; the factory takes no arguments and returns a Task.
REGISTRY: dict[str, str] = {
    "aime24": "forkctl.tasks.math:aime24",
    "aime25": "forkctl.tasks.math:aime25",
    "math500": "forkctl.tasks.math:math500",
    "synthetic": "forkctl.tasks.synthetic:held_out",
    "synthetic-train": "forkctl.tasks.synthetic:train_split",
    "lcb_v5": "forkctl.tasks.lcb:lcb_v5",
    "lcb_v6": "forkctl.tasks.lcb:lcb_v6",
    "lcb_sample": "forkctl.tasks.lcb:lcb_sample",
}


def available() -> list[str]:
    return sorted(REGISTRY)


def get_task(spec: str) -> Task:
    """A registered task by name, or a questions file (JSONL/Parquet) judged as math."""
    if spec in REGISTRY:
        module, factory = REGISTRY[spec].split(":")
        return getattr(importlib.import_module(module), factory)()
    path = Path(spec)
    if path.suffix in {".jsonl", ".json", ".parquet"} or path.exists():
        if not path.exists():
            raise UserError(f"questions file not found: {spec}")
        from forkctl.tasks.math import MathTask

        return MathTask(name=path.stem, local_file=path)
    raise UserError(f"unknown task {spec!r}: use one of {', '.join(available())} or a path to a "
                    f".jsonl/.parquet questions file")


__all__ = ["REGISTRY", "Scored", "Task", "available", "get_task", "user_message"]

"""What a benchmark is, and the registry of named ones."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forkctl.records import Question


@dataclass
class Scored:
    """A response as a benchmark judges it. ``answer_class``: equal ids = equivalent answers within a
    question (None = no answer); ``extra`` lands in the sample record (e.g. a detected strategy)."""

    answer: str | None
    correct: bool | None
    answer_class: int | None
    extra: dict[str, Any] = field(default_factory=dict)


class Benchmark(ABC):
    """Questions plus the way to judge responses to them."""

    name: str = "custom"

    @abstractmethod
    def load(self) -> list[Question]:
        """The questions, in a stable order."""

    @abstractmethod
    def score(self, items: list[tuple[Question, list[str]]]) -> list[list[Scored]]:
        """Judge several questions' responses at once (lets judges batch work in a process pool)."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


_REGISTRY: dict[str, Callable[[], Benchmark]] = {}


def register(name: str) -> Callable[[Callable[[], Benchmark]], Callable[[], Benchmark]]:
    def deco(factory: Callable[[], Benchmark]) -> Callable[[], Benchmark]:
        _REGISTRY[name] = factory
        return factory

    return deco


def available() -> list[str]:
    return sorted(_REGISTRY)


def get_benchmark(spec: str) -> Benchmark:
    """A registered benchmark by name, or a questions file (JSONL/Parquet) judged as math."""
    if spec in _REGISTRY:
        return _REGISTRY[spec]()
    path = Path(spec)
    if path.suffix in {".jsonl", ".json", ".parquet"} or path.exists():
        if not path.exists():
            raise ValueError(f"benchmark file not found: {spec}")
        from forkctl.benchmarks.math import MathBenchmark

        return MathBenchmark(name=path.stem, local_file=path)
    raise ValueError(f"unknown benchmark {spec!r}: use one of {', '.join(available())} or a path to a "
                     f".jsonl/.parquet questions file")

"""Benchmark registry (lighteval-style): a name maps to a factory of :class:`Benchmark`.

``get_benchmark`` accepts a registered name (``aime24``, ``aime25``, ``math500``, ...) or a path to a JSONL/Parquet
file of questions.
"""

from forkctl.benchmarks.base import Benchmark, Scored, available, get_benchmark, register
from forkctl.benchmarks import math as _math  # noqa: F401  (registers the math benchmarks)
from forkctl.benchmarks import synthetic as _synthetic  # noqa: F401  (registers the synthetic task)

__all__ = ["Benchmark", "Scored", "available", "get_benchmark", "register"]

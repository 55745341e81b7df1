"""Shared fixtures: a tiny local model (no Hub), the benchmark data folder, a real `transformers serve`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Cap threads before torch is imported anywhere: tests share 2 cores with the servers they start.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FORKCTL_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (SHARED_DATA / "aime24.jsonl").exists():
        pytest.skip(f"benchmark data not found in {SHARED_DATA} (set FORKCTL_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture()
def questions_file(tmp_path: Path) -> Path:
    """Three arithmetic questions with gold answers (ids q0..q2)."""
    from forkctl.testing import write_arithmetic_questions

    return write_arithmetic_questions(tmp_path / "questions.jsonl", 3)


@pytest.fixture(scope="session")
def toy_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Qwen2 with 4 forking tokens and a locally trained tokenizer."""
    from forkctl.toy import build_toy_model

    return build_toy_model(tmp_path_factory.mktemp("toy") / "model", num_forks=4)


@pytest.fixture(scope="session")
def transformers_server(toy_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """`transformers serve` on 127.0.0.1 serving the toy model (ignores `n`, as real servers may)."""
    from forkctl.testing import TransformersServer

    server = TransformersServer(toy_model, tmp_path_factory.mktemp("serve") / "server.log").start()
    yield server
    server.stop()

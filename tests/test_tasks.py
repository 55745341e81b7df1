"""Task registry: named benchmarks from a local data folder or through `datasets` (the Hub code path,
exercised here on a local dataset folder), custom files, and clear errors."""

import json

import pytest

from forkctl.tasks import available, get_task
from forkctl.tasks.math import MathTask


def test_named_benchmarks_load_from_the_data_folder(data_dir, monkeypatch):
    monkeypatch.setenv("FORKCTL_DATA_DIR", str(data_dir))
    assert {"aime24", "aime25", "math500"} <= set(available())
    aime24 = get_task("aime24").load()
    assert len(aime24) == 30 and aime24[0].id == "2024-I-1"
    aime25 = get_task("aime25").load()
    assert len(aime25) == 30 and aime25[0].answer == "70"
    math500 = get_task("math500").load()
    assert len(math500) == 500 and math500[0].extra.get("subject")


def test_hub_path_through_datasets_on_a_local_dataset(tmp_path, monkeypatch):
    monkeypatch.delenv("FORKCTL_DATA_DIR", raising=False)
    repo = tmp_path / "fake_hub_dataset"
    repo.mkdir()
    rows = [{"unique_id": "test/algebra/1.json", "problem": "x+1=2", "answer": "1"},
            {"unique_id": "test/algebra/2.json", "problem": "2x=1", "answer": "\\frac{1}{2}"}]
    (repo / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench = MathTask("m", hub_id=str(repo), split="test")
    qs = bench.load()
    assert [q.id for q in qs] == ["test/algebra/1.json", "test/algebra/2.json"]
    assert bench.describe()["source"].startswith("hub:")
    [[ok, wrong]] = bench.score([(qs[1], ["so \\boxed{0.5}", "\\boxed{2}"])])
    assert ok.correct and not wrong.correct and ok.answer == "0.5"


def test_unreachable_hub_gives_a_clear_error(monkeypatch):
    monkeypatch.delenv("FORKCTL_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="set FORKCTL_DATA_DIR"):
        MathTask("x", hub_id="nobody/does-not-exist", split="test").load()


def test_custom_jsonl_and_parquet_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"id": "a", "problem": "1+1", "answer": "2"}]
    (tmp_path / "q.jsonl").write_text(json.dumps(rows[0]) + "\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "q.parquet")
    for name in ("q.jsonl", "q.parquet"):
        [q] = get_task(str(tmp_path / name)).load()
        assert (q.id, q.answer) == ("a", "2")
    with pytest.raises(ValueError, match="not found"):
        get_task(str(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="unknown task"):
        get_task("aime2099")

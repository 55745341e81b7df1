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


def test_code_files_and_any_livecodebench_release_resolve_to_the_code_task(tmp_path):
    from forkctl.tasks.lcb import LCBTask

    path = tmp_path / "code.jsonl"
    path.write_text(json.dumps({"id": "c1", "problem": "add", "testtype": "stdin",
                                "tests": [{"input": "1 2\n", "output": "3\n"}]}) + "\n")
    task = get_task(str(path), grader="fixed", start_date=None, end_date=None)
    assert isinstance(task, LCBTask) and task.grader.mode == "fixed" and task.load()[0].tests
    for name, release in [("lcb_release_v4", "release_v4"), ("lcb_v3", "release_v3")]:
        task = get_task(name)
        assert isinstance(task, LCBTask) and task.release == release
    v5 = get_task("lcb_v5", start_date="2024-09-01")
    assert (v5.start_date, v5.end_date) == ("2024-09-01", "2025-02-01")

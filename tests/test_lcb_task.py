"""The LiveCodeBench task: local file, the Hub shard path (on local shards, never downloading), private-test
decoding with a restricted unpickler, date windows, prompts, and score()."""

from __future__ import annotations

import base64
import json
import pickle
import zlib

import pytest

from forkctl.tasks import get_task
from forkctl.tasks.lcb import LCBTask, build_prompt, decode_private_tests, shard_names



def _encode(obj) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(obj)))).decode()


def _row(qid: str, date: str, private: list) -> dict:
    return {"question_id": qid, "question_title": qid, "question_content": "add two numbers", "platform": "atcoder",
            "contest_date": date, "starter_code": "", "difficulty": "easy", "metadata": "{}",
            "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
            "private_test_cases": _encode(private)}


def test_hub_shards_windows_and_private_tests(tmp_path):
    (tmp_path / "test.jsonl").write_text(json.dumps(_row("a", "2024-07-31T00:00:00", [])) + "\n")
    rows = [_row("b", "2024-08-01T00:00:00", [{"input": "5 6\n", "output": "11\n", "testtype": "stdin"}]),
            _row("c", "2025-02-01T00:00:00", [])]
    for i in range(2, 6):
        (tmp_path / f"test{i}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (rows if i == 5 else [])))
    task = LCBTask("lcb_v5", release="release_v5", start_date="2024-08-01", end_date="2025-02-01",
                   hub_root=str(tmp_path))
    [q] = task.load()
    assert q.id == "b" and len(q.tests) == 2 and q.testtype == "stdin"
    assert task.describe().items() >= {"release": "release_v5", "problems": 1, "private_tests": True,
                                     "grader": "official"}.items()
    assert task.describe()["window"] == ["2024-08-01", "2025-02-01"]
    [[ok, wrong]] = task.score([(q, ["```python\na, b = map(int, input().split())\nprint(a + b)\n```", "no code"])])
    assert ok.correct and ok.extra["verdicts"] == ["pass", "pass"] and ok.extra["grader"] == "official"
    assert wrong.answer is None and not wrong.correct and wrong.extra["verdicts"] == ["compile_error"]


def test_restricted_unpickler_refuses_objects():
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    blob = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    with pytest.raises(pickle.UnpicklingError):
        decode_private_tests(blob)
    assert decode_private_tests(_encode([{"input": "1", "output": "2"}])) == [{"input": "1", "output": "2"}]
    assert shard_names("release_v3") == ["test.jsonl", "test2.jsonl", "test3.jsonl"]
    assert shard_names("v6") == ["test6.jsonl"]


def test_local_sample_file_and_prompts(monkeypatch, data_dir):
    monkeypatch.setenv("FORKCTL_DATA_DIR", str(data_dir))
    task = get_task("lcb_sample")
    questions = task.load()
    assert len(questions) == 279 and task.describe()["private_tests"] is False
    functional = next(q for q in questions if q.testtype == "functional")
    assert functional.fn_name and "### Format: You will use the following starter code" in task.prompt(functional)
    assert build_prompt("P", None).endswith("```python\n# YOUR CODE HERE\n```\n\n### Answer: (use the provided "
                                             "format with backticks)\n\n")

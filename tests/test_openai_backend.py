"""The openai backend against a real OpenAI-compatible server on 127.0.0.1 (`transformers serve`)."""

import json

import pytest
from typer.testing import CliRunner

from forkctl.cli import app
from forkctl.generation import Request, SamplingConfig
from forkctl.generation.openai_backend import OpenAIBackend
from forkctl.records import Sample, read_records

pytestmark = pytest.mark.slow


def test_backend_tops_up_servers_that_ignore_n(transformers_server, toy_model):
    backend = OpenAIBackend(str(toy_model), base_url=transformers_server.base_url, tokenizer=str(toy_model))
    out = backend.generate([Request("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", n=3),
                            Request("<|im_start|>user\nyo<|im_end|>\n", n=1)],
                           SamplingConfig(temperature=1.0, max_new_tokens=5))
    assert [len(c) for c in out] == [3, 1]
    for comp in out[0] + out[1]:
        assert comp.finish_reason in {"stop", "length"}
        assert 1 <= comp.num_tokens <= 6
        assert comp.prompt_tokens > 0


def test_eval_with_openai_backend(transformers_server, toy_model, tmp_path, monkeypatch):
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"id": "a", "problem": "1+1?", "answer": "2"}\n{"id": "b", "problem": "2+2?", "answer": "4"}\n')
    monkeypatch.setenv("MY_SECRET_KEY", "sk-should-never-appear")
    out = tmp_path / "ev"
    result = CliRunner().invoke(app, [
        "eval", "--backend", "openai", "--base-url", transformers_server.base_url, "--model", str(toy_model),
        "--tokenizer", str(toy_model), "--api-key-env", "MY_SECRET_KEY", "--task", str(questions),
        "--n", "4", "--k", "1,4", "--fork", "all", "--max-new-tokens", "6", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    samples = read_records(out / "samples.jsonl", Sample)
    assert sorted(s.key for s in samples) == [(q, j) for q in "ab" for j in range(4)]
    assert [s.fork for s in samples if s.question_id == "a"] == [1, 2, 3, 4]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["backend"] == "openai"
    for path in out.iterdir():
        assert "sk-should-never-appear" not in path.read_text()

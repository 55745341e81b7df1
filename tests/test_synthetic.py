"""The synthetic multi-strategy task: generator, strategies, classifier, checker, benchmark, training data."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from forkctl.tasks import get_task
from forkctl.tasks.synthetic import MAX_ITEMS, STRATEGIES, Problem, SyntheticTask, check, classify, \
    extract_answer, generate_problems, is_test_problem, parse_problem, solve, write_trace_sets
from forkctl.records import Question, TraceSet, read_records


def test_every_strategy_is_correct_and_recognised() -> None:
    rng = random.Random(0)
    for _ in range(300):
        p = Problem([rng.randint(0, 9) for _ in range(rng.randint(2, MAX_ITEMS))])
        assert parse_problem(p.text).values == p.values
        texts = {s: solve(p, s) for s in STRATEGIES}
        assert len(set(texts.values())) == len(STRATEGIES)  # visibly different reasoning
        for s, t in texts.items():
            assert classify(t) == s
            assert check(p.text, t) == (str(p.answer), True)
            assert extract_answer(t) == str(sum(p.values) % 10)


def test_examples_of_each_strategy() -> None:
    p = Problem([3, 4, 5, 1, 9])
    assert p.text == "sum mod 10: a3 b4 c5 d1 e9" and p.answer == 2
    assert solve(p, "forward") == "a3=3 b4=7 c5=2 d1=3 e9=2 answer=2"
    assert solve(p, "backward") == "e9=9 d1=0 c5=5 b4=9 a3=2 answer=2"
    assert solve(p, "direct") == "5 numbers, answer=2"


def test_classifier_is_structural() -> None:
    assert classify("a3=3 b4=7 c5=2 answer=9") == "forward"  # wrong arithmetic, still the forward strategy
    assert classify("a3=3 b4=7 c") == "forward"  # truncated
    assert classify("d1=1 c5=6 b4=0 a3=3 answer=3") == "backward"
    assert classify("d1=1 c5=6 b4=0 a3=9 answer=9") == "backward"  # wrong arithmetic
    assert classify("d1=1 c5=6 b") == "backward"  # truncated
    assert classify("b4=4") == "backward"  # one complete step, not from a: backward so far
    for text in ["", "answer=3", "a3=3 c5=2 answer=2", "b4=4 answer=4", "a3=3 b+c=2 answer=2",
                 "a+b=7 c=3 answer=3", "5 numbers,", "hello world", "a3=3 answer=3 extra",
                 "d1=1 c5=6 answer=6", "d1=1 b4=5 a3=8 answer=8", "c5=5 b4=9 a3=2 d1=3 answer=3"]:
        assert classify(text) == "unknown", text


def test_checker() -> None:
    q = "sum mod 10: a3 b4"
    assert check(q, "a3=3 b4=7 answer=7") == ("7", True)
    assert check(q, "a3=3 b4=8 answer=8") == ("8", False)
    assert check(q, "a3=3 b4=7") == (None, False)
    assert check(q, "answer=1 answer=7") == ("7", True)  # the last answer counts


def test_strategy_lengths_differ_with_input_size() -> None:
    """What gfpo exploits: forward and backward grow with the input, direct stays constant."""
    short, long_ = Problem([1, 2]), Problem([1] * MAX_ITEMS)
    lens = {s: (len(solve(short, s)), len(solve(long_, s))) for s in STRATEGIES}
    assert lens["forward"] == lens["backward"] and lens["forward"][1] > 3 * lens["direct"][1]
    growth = {s: long_ - short_ for s, (short_, long_) in lens.items()}
    assert growth["forward"] >= 5 * (MAX_ITEMS - 2) and growth["direct"] <= 1


def test_generation_is_deterministic_and_splits_are_disjoint() -> None:
    a = generate_problems(200, seed=3, split="train")
    assert [p.text for p in a] == [p.text for p in generate_problems(200, seed=3, split="train")]
    assert len({p.text for p in a}) == 200 and not any(p.is_test for p in a)
    test = generate_problems(200, seed=3, split="test")
    assert all(is_test_problem(p.text) for p in test)
    assert not {p.text for p in a} & {p.text for p in test}
    assert {len(p.values) for p in a} == set(range(2, 9))
    with pytest.raises(ValueError, match="items per question"):
        generate_problems(1, min_items=1)


def test_write_trace_sets(tmp_path: Path) -> None:
    path = write_trace_sets(tmp_path / "train.jsonl", questions=30, seed=1)
    sets = read_records(path, TraceSet)
    assert len(sets) == 30 and len({s.id for s in sets}) == 30
    orders = set()
    for ts in sets:
        strategies = [t.extra["strategy"] for t in ts.traces]
        assert sorted(strategies) == sorted(STRATEGIES)
        orders.add(tuple(strategies))
        for t in ts.traces:
            assert classify(t.text) == t.extra["strategy"] and check(ts.problem, t.text, ts.answer)[1]
        assert not is_test_problem(ts.problem)
    assert len(orders) > 1  # shuffled: no consistent order for tie-breaking to exploit
    only = read_records(write_trace_sets(tmp_path / "two.jsonl", 5, strategies=["direct", "backward"]), TraceSet)
    assert all(len(ts.traces) == 2 for ts in only)
    with pytest.raises(ValueError, match="unknown strategy"):
        write_trace_sets(tmp_path / "x.jsonl", 5, strategies=["guess"])


def test_benchmark_scores_and_records_strategy() -> None:
    bench = get_task("synthetic")
    assert isinstance(bench, SyntheticTask)
    questions = bench.load()
    assert len(questions) == 300 and all(is_test_problem(q.problem) for q in questions)
    assert [q.id for q in questions] == [q.id for q in bench.load()]
    q = questions[0]
    p = parse_problem(q.problem)
    texts = [solve(p, "forward"), solve(p, "direct").replace(f"answer={p.answer}", f"answer={(p.answer + 1) % 10}"),
             "gibberish"]
    scored = bench.score([(q, texts)])[0]
    assert [s.correct for s in scored] == [True, False, False]
    assert [s.extra["strategy"] for s in scored] == ["forward", "direct", "unknown"]
    assert scored[0].answer_class != scored[1].answer_class and scored[2].answer is None
    assert scored[0].extra["num_items"] == len(p.values)
    assert isinstance(q, Question) and q.answer == str(p.answer)


def test_eval_cli_on_synthetic_records_strategy(tmp_path: Path) -> None:
    """`forkctl eval --benchmark synthetic --fork all` on a fresh tiny model (random text, strategies unknown)."""
    import json

    from typer.testing import CliRunner

    from forkctl.tasks.synthetic import build_synthetic_model
    from forkctl.cli import app

    model = build_synthetic_model(tmp_path / "m", num_forks=3, hidden_size=32, num_layers=1, num_heads=2,
                                  intermediate_size=64)
    out = tmp_path / "eval"
    res = CliRunner().invoke(app, ["eval", "--model", str(model), "--task", "synthetic", "--n", "3", "--fork",
                                   "all", "--limit", "2", "--max-new-tokens", "8", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and sorted({r["fork"] for r in rows}) == [1, 2, 3]
    assert all(r["strategy"] in (*STRATEGIES, "unknown") and "num_items" in r for r in rows)
    assert "cons@native" in json.loads((out / "metrics.json").read_text())["metrics"]

"""The synthetic-walk task (the embedded toy's world): walks, classifier, judge, splits, trace sets, its teachers
over real HTTP, and `forkctl synthetic-data --task synthetic-walk`."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forkctl.cli import app
from forkctl.errors import UserError
from forkctl.records import Question, TraceSet, read_records
from forkctl.tasks import get_task
from forkctl.tasks.synthetic import ChoiceProblem as WalkProblem, find_choice, generate_choice_problems, parse_choice
from forkctl.tasks.walk import MAX_DIGITS, MIN_DIGITS, WALK, WALKS, classify, solve, write_trace_sets


def generate_problems(count: int, seed: int, split: str) -> list[WalkProblem]:
    return generate_choice_problems(count, seed, split, WALK)


parse_problem = parse_choice


def test_examples_of_each_walk() -> None:
    first, last = WalkProblem("first", [3, 7, 2, 9, 5]), WalkProblem("last", [3, 7, 2, 9, 5])
    assert first.text == "first of: 3 7 2 9 5" and first.answer == 3 and last.answer == 5
    assert solve(first, "front") == "front: 3 answer=3"
    assert solve(first, "back") == "back: 5 9 2 7 3 answer=3"
    assert solve(last, "front") == "front: 3 7 2 9 5 answer=5"
    assert solve(last, "back") == "back: 5 answer=5"


def test_both_walks_are_right_and_recognised_and_only_one_is_short() -> None:
    rng = random.Random(0)
    for _ in range(200):
        p = WalkProblem(rng.choice(["first", "last"]), [rng.randint(0, 9) for _ in range(rng.randint(5, 8))])
        assert parse_problem(p.text) == p
        texts = {w: solve(p, w) for w in WALKS}
        for w, t in texts.items():
            assert classify(t) == w and t.endswith(f"answer={p.answer}")
        short = texts[p.right_mode]
        assert min(len(t) for t in texts.values()) == len(short) and len(short.split()) == 3


def test_classifier_reads_the_first_step_even_when_truncated() -> None:
    assert classify("back: 5 9 2") == "back" and classify("front: 3 7") == "front"
    for text in ["", "front:", "answer=3", "sideways: 3 answer=3", "3 answer=3"]:
        assert classify(text) == "unknown", text


def test_a_problem_is_found_inside_a_longer_user_message() -> None:
    assert find_choice("Please answer.\nfirst of: 1 2 3 4 5\nThanks") == WalkProblem("first", [1, 2, 3, 4, 5])
    assert find_choice("sum mod 10: a1 b2") is None
    with pytest.raises(UserError, match="not a first/last-of problem"):
        parse_problem("hello")


def test_generation_is_deterministic_balanced_and_splits_are_disjoint() -> None:
    train, test = generate_problems(400, 0, "train"), generate_problems(50, 0, "test")
    assert [p.text for p in train] == [p.text for p in generate_problems(400, 0, "train")]
    assert not {p.text for p in train} & {p.text for p in test}
    assert sum(p.keyword == "first" for p in train) == 200
    assert all(MIN_DIGITS <= len(p.digits) <= MAX_DIGITS and p.digits[0] != p.digits[-1] for p in train + test)


def test_task_scores_and_records_the_walk() -> None:
    task = get_task("synthetic-walk")
    q = task.load()[0]
    p = parse_problem(q.problem)
    short, long_ = solve(p, p.right_mode), solve(p, "back" if p.right_mode == "front" else "front")
    [row] = task.score([(q, [short, long_, long_[:12], "nonsense"])])
    assert [s.correct for s in row] == [True, True, False, False]
    assert [s.extra["strategy"] for s in row] == [p.right_mode, classify(long_), classify(long_), "unknown"]
    assert task.extract_answer(short) == str(p.answer) and task.describe()["source"] == "forkctl.tasks.walk"
    assert all(s.extra["keyword"] == p.keyword for s in row)
    train = get_task("synthetic-walk-train").load()
    assert not {x.problem for x in train} & {x.problem for x in task.load()}


def test_write_trace_sets(tmp_path: Path) -> None:
    path = write_trace_sets(tmp_path / "walk.jsonl", 20, seed=3)
    sets = read_records(path, TraceSet)
    assert len(sets) == 20
    orders = set()
    for ts in sets:
        assert sorted(t.extra["strategy"] for t in ts.traces) == ["back", "front"]
        assert all(t.text.endswith(f"answer={ts.answer}") for t in ts.traces)
        orders.add(ts.traces[0].extra["strategy"])
    assert orders == {"front", "back"}  # shuffled: no order a tie-break could turn into a fake specialisation


def test_served_walk_teachers_over_http(tmp_path: Path) -> None:
    """The teachers `forkctl run` serves, through the real openai client: each walk, and a sloppy one."""
    from openai import OpenAI

    from forkctl.synthetic_teachers import TeachersServer

    with TeachersServer() as server:
        client = OpenAI(base_url=server.base_url, api_key="none")
        assert {"front", "back"} <= {m.id for m in client.models.list().data}
        problems = generate_problems(20, 0, "train")
        for p in problems[:2]:
            for walk in WALKS:
                r = client.chat.completions.create(model=walk, messages=[{"role": "user", "content": p.text}], n=2)
                assert [c.message.content for c in r.choices] == [solve(p, walk)] * 2
        sloppy = [client.chat.completions.create(model="front+sloppy", messages=[{"role": "user", "content": p.text}])
                  .choices[0].message.content for p in problems]
        wrong = sum(not t.endswith(f"answer={p.answer}") for t, p in zip(sloppy, problems))
        assert 3 <= wrong <= 17 and all(classify(t) == "front" for t in sloppy)


def test_synthetic_data_cli_writes_walk_trace_sets_and_a_base(tmp_path: Path) -> None:
    out, model = tmp_path / "walk.jsonl", tmp_path / "base"
    result = CliRunner().invoke(app, ["synthetic-data", "--task", "synthetic-walk", "--questions", "5", "--out",
                                      str(out), "--model-out", str(model), "--num-forks", "2", "--hidden-size",
                                      "16", "--num-layers", "1"])
    assert result.exit_code == 0, result.output
    assert len(read_records(out, TraceSet)) == 5
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    assert "<think2>" in tok.get_vocab() and len(tok("front: 3 answer=3")["input_ids"]) <= 8  # fits the budget
    bad = CliRunner().invoke(app, ["synthetic-data", "--task", "synthetic-walk", "--strategies", "forward",
                                   "--out", str(out)])
    assert bad.exit_code == 2 and "--strategies is for the synthetic task" in bad.output


def test_walk_questions_are_plain_questions() -> None:
    q = get_task("synthetic-walk").load()[0]
    assert isinstance(q, Question) and q.extra["keyword"] in {"first", "last"}

"""``forkctl filter``: reference and majority modes, ties, equivalent answers, drops, M, teachers, duplicates, length."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from forkctl.analysis import jaccard, shingles
from forkctl.filter import FilterConfig, NothingKept, run_filter, summary_tables, trace_text
from forkctl.records import RecordError, TeacherResponse, TraceSet, read_records, write_records

REPO = Path(__file__).resolve().parents[1]

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon "
         "phi chi psi omega one two three four five six seven eight nine ten").split()


def _text(seed: int, answer: str) -> str:
    """Distinct text per seed (no two seeds are near-duplicates), ending in a boxed answer."""
    rng = random.Random(seed)
    words = [rng.choice(WORDS) for _ in range(30)]
    return f"Reasoning {seed}: " + " ".join(words) + f". So the answer is $\\boxed{{{answer}}}$."


def _rec(qid: str, teacher: str, sample: int, answer: str | None, *, text: str | None = None,
         finish: str = "stop", error: str | None = None, reasoning: str | None = None) -> dict[str, Any]:
    seed = zlib.crc32(f"{qid}|{teacher}|{sample}".encode())
    if text is None and error is None:
        text = _text(seed, answer) if answer is not None else f"Reasoning {seed}: no idea " + " ".join(WORDS[:20])
    return TeacherResponse(question_id=qid, teacher=teacher, sample=sample, text=text, reasoning=reasoning,
                           answer=answer if error is None else None, finish_reason=None if error else finish,
                           usage=None if error else {"prompt_tokens": 5, "completion_tokens": 50},
                           latency_s=None if error else 0.1, error=error).to_dict()


def _files(tmp_path: Path, questions: list[dict[str, Any]], records: list[dict[str, Any]]) -> tuple[Path, Path]:
    qpath, tpath = tmp_path / "questions.jsonl", tmp_path / "traces.jsonl"
    write_records(qpath, questions)
    write_records(tpath, records)
    return qpath, tpath


def _filter(tmp_path: Path, questions: list[dict] | str, records: list[dict], min_votes: int | None = None,
            **kw: Any):
    """Filter ``records`` against ``questions`` (a list written to a file, or a task name)."""
    if isinstance(questions, str):
        qpath, tpath = questions, tmp_path / "traces.jsonl"
        write_records(tpath, records)
    else:
        qpath, tpath = _files(tmp_path, questions, records)
    cfg = FilterConfig(traces=str(tpath), task=str(qpath), out=str(tmp_path / "sets.jsonl"), **kw)
    if min_votes is not None:
        cfg.min_votes = min_votes
    result = run_filter(cfg)
    sets = {s.id: s for s in read_records(result.out_path, TraceSet)}  # the output validates as trace sets
    return result, sets


def test_reference_mode_equivalent_answers_and_drops(tmp_path: Path) -> None:
    questions = [{"id": "q1", "problem": "Half of one?", "answer": "\\frac{1}{2}"}]
    records = [_rec("q1", "A", 0, "0.5"), _rec("q1", "A", 1, "\\frac12"), _rec("q1", "B", 0, "\\dfrac{1}{2}"),
               _rec("q1", "B", 1, "3"), _rec("q1", "C", 0, None),
               _rec("q1", "C", 1, "1/2", finish="length"), _rec("q1", "C", 2, None, error="HTTP 500: boom")]
    result, sets = _filter(tmp_path, questions, records, mode="reference")
    kept = sets["q1"].traces
    assert len(kept) == 3 and {t.teacher for t in kept} == {"A", "B"}
    assert sets["q1"].answer == "\\frac{1}{2}"
    assert result.per_teacher["B"]["wrong"] == 1
    assert result.per_teacher["C"]["wrong"] == 1  # no answer at all
    assert result.per_teacher["C"]["truncated"] == 1 and result.per_teacher["C"]["failed"] == 1
    assert result.per_question["q1"].kept == 3
    assert result.summary_path.exists()
    assert summary_tables(result)


def test_majority_mode_quorum_and_ties(tmp_path: Path) -> None:
    questions = [{"id": "maj", "problem": "p1", "answer": None}, {"id": "tie", "problem": "p2", "answer": None},
                 {"id": "weak", "problem": "p3", "answer": None}]
    records = [_rec("maj", "A", 0, "0.5"), _rec("maj", "B", 0, "\\frac{1}{2}"), _rec("maj", "C", 0, "7"),
               _rec("tie", "A", 0, "3"), _rec("tie", "B", 0, "3"), _rec("tie", "C", 0, "4"),
               _rec("tie", "D", 0, "4"),
               _rec("weak", "A", 0, "1"), _rec("weak", "B", 0, "1"), _rec("weak", "C", 0, "2"),
               _rec("weak", "D", 0, "3"), _rec("weak", "E", 0, "4")]
    result, sets = _filter(tmp_path, questions, records, mode="majority", quorum=0.5)
    assert set(sets) == {"maj"}
    assert {t.teacher for t in sets["maj"].traces} == {"A", "B"}
    assert sets["maj"].answer in {"0.5", "\\frac{1}{2}"}  # no gold: the agreed answer stands in
    assert result.per_question["tie"].note == "no majority"
    assert result.per_question["weak"].note == "no majority"  # 2 of 5 is under the quorum
    # A lower quorum accepts the plurality of 'weak', but a tie stays a tie.
    _, sets = _filter(tmp_path, questions, records, mode="majority", quorum=0.4)
    assert set(sets) == {"maj", "weak"} and len(sets["weak"].traces) == 2


def test_majority_mode_ignores_gold(tmp_path: Path) -> None:
    questions = [{"id": "q", "problem": "p", "answer": "5"}]
    records = [_rec("q", "A", 0, "6"), _rec("q", "B", 0, "6"), _rec("q", "C", 0, "5")]
    _, sets = _filter(tmp_path, questions, records, mode="majority")
    assert [t.teacher for t in sets["q"].traces] == ["A", "B"]
    _, sets = _filter(tmp_path, questions, records, mode="reference")
    assert [t.teacher for t in sets["q"].traces] == ["C"]


def test_m_larger_than_survivors_and_min_traces(tmp_path: Path) -> None:
    questions = [{"id": "q1", "problem": "p", "answer": "2"}, {"id": "q2", "problem": "p", "answer": "2"},
                 {"id": "q3", "problem": "p", "answer": "2"}]
    records = [_rec("q1", "A", 0, "2"), _rec("q1", "B", 0, "2"), _rec("q2", "A", 0, "2"), _rec("q2", "B", 0, "9")]
    result, sets = _filter(tmp_path, questions, records, max_traces=10)
    assert len(sets["q1"].traces) == 2 and len(sets["q2"].traces) == 1 and "q3" not in sets
    assert result.survivors_histogram() == {0: 1, 1: 1, 2: 1}
    assert result.per_question["q3"].note == "no responses"
    result, sets = _filter(tmp_path, questions, records, max_traces=10, min_traces=2)
    assert set(sets) == {"q1"}
    assert result.per_teacher["A"]["too_few"] == 1 and result.per_question["q2"].note == "too few traces"


def test_prefers_distinct_teachers_then_surplus(tmp_path: Path) -> None:
    questions = [{"id": "q", "problem": "p", "answer": "2"}]
    records = [_rec("q", "A", s, "2") for s in range(4)] + [_rec("q", "B", 0, "2"), _rec("q", "C", 0, "2")]
    result, sets = _filter(tmp_path, questions, records, max_traces=3)
    assert sorted(t.teacher for t in sets["q"].traces) == ["A", "B", "C"]
    assert result.per_teacher["A"]["surplus"] == 3
    _, sets = _filter(tmp_path, questions, records, max_traces=5)
    assert sorted(t.teacher for t in sets["q"].traces) == ["A", "A", "A", "B", "C"]


def test_near_duplicates_removed(tmp_path: Path) -> None:
    base = _text(1, "2")
    near = base.replace("Reasoning 1:", "Reasoning one:")
    questions = [{"id": "q", "problem": "p", "answer": "2"}]
    records = [_rec("q", "A", 0, "2", text=base), _rec("q", "B", 0, "2", text=near),
               _rec("q", "C", 0, "2", text=_text(2, "2"))]
    assert jaccard(shingles(base), shingles(near)) >= 0.8 > jaccard(shingles(base), shingles(_text(2, "2")))
    result, sets = _filter(tmp_path, questions, records)
    assert sorted(t.teacher for t in sets["q"].traces) == ["A", "C"]
    assert result.per_teacher["B"]["duplicate"] == 1


def test_token_length_limit(tmp_path: Path) -> None:
    from forkctl.toy import toy_corpus, train_tokenizer

    tok_dir = tmp_path / "tok"
    train_tokenizer(toy_corpus(num_lines=300), vocab_size=300).save_pretrained(tok_dir)
    short = "We add. So the answer is $\\boxed{2}$."
    long = _text(3, "2") * 20
    questions = [{"id": "q", "problem": "p", "answer": "2"}]
    records = [_rec("q", "A", 0, "2", text=short), _rec("q", "B", 0, "2", text=long)]
    result, sets = _filter(tmp_path, questions, records, tokenizer=str(tok_dir), max_tokens=200)
    assert [t.teacher for t in sets["q"].traces] == ["A"]
    assert result.per_teacher["B"]["too_long"] == 1
    with pytest.raises(ValueError, match="go together"):
        FilterConfig(traces="t", task="q", max_tokens=5).validate()


def test_trace_text_combines_reasoning_and_strips_think() -> None:
    r = TeacherResponse(question_id="q", teacher="A", sample=0, text="The answer is \\boxed{2}.",
                        reasoning="First, 1+1=2.")
    assert trace_text(r) == "First, 1+1=2.\n</think>\n\nThe answer is \\boxed{2}."
    assert trace_text(r, "\n\n") == "First, 1+1=2.\n\nThe answer is \\boxed{2}."
    inline = TeacherResponse(question_id="q", teacher="A", sample=0, text="<think>\nhmm</think> \\boxed{2}")
    assert trace_text(inline) == "hmm</think> \\boxed{2}"


def test_last_record_of_a_key_wins_and_unknown_questions_error(tmp_path: Path) -> None:
    questions = [{"id": "q", "problem": "p", "answer": "2"}]
    records = [_rec("q", "A", 0, None, error="timeout"), _rec("q", "A", 0, "2")]
    result, sets = _filter(tmp_path, questions, records)
    assert len(sets["q"].traces) == 1 and result.per_teacher["A"].get("failed", 0) == 0
    with pytest.raises(RecordError, match="not among --task"):
        _filter(tmp_path, questions, records + [_rec("zz", "A", 0, "2")])


def test_limit_keeps_to_the_questions_collect_was_limited_to(tmp_path: Path) -> None:
    questions = [{"id": f"q{i}", "problem": "p", "answer": "2"} for i in range(3)]
    records = [_rec("q0", "A", 0, "2"), _rec("q1", "A", 0, "2")]
    result, _ = _filter(tmp_path, questions, records)
    assert result.per_question["q2"].note == "no responses"
    result, sets = _filter(tmp_path, questions, records, limit=2)
    assert set(result.per_question) == set(sets) == {"q0", "q1"}  # q2 was never asked: not a dropped question
    with pytest.raises(RecordError, match=r"not among --task .*and --limit"):
        _filter(tmp_path, questions, records, limit=1)


def test_reference_mode_without_gold_drops_question(tmp_path: Path) -> None:
    with pytest.raises(NothingKept, match="kept no trace sets: 1 no gold answer") as caught:
        _filter(tmp_path, [{"id": "q", "problem": "p"}], [_rec("q", "A", 0, "2")])
    result = caught.value.result
    assert result.per_question["q"].note == "no gold answer"
    summary = json.loads(result.summary_path.read_text())  # written before the refusal
    assert summary["per_question"]["q"]["note"] == "no gold answer"
    assert summary["stage"] == "filter" and summary["fingerprint"]["mode"] == "reference" and "packages" in summary
    assert read_records(result.out_path, TraceSet) == []


def test_majority_quorum_counts_every_response_and_needs_votes(tmp_path: Path) -> None:
    questions = [{"id": "lone", "problem": "p1", "answer": "8"}, {"id": "few", "problem": "p2", "answer": "8"},
                 {"id": "half", "problem": "p3", "answer": "8"}, {"id": "one", "problem": "p4", "answer": "8"}]
    records = [_rec("lone", "A", 0, "3"), _rec("lone", "B", 0, None), _rec("lone", "C", 0, None),  # 1 answer of 4
               _rec("lone", "D", 0, "3", finish="length"),
               _rec("few", "A", 0, "8"), _rec("few", "B", 0, "8"), _rec("few", "C", 0, None),  # 2 of 5: < 0.5
               _rec("few", "D", 0, None), _rec("few", "E", 0, None),
               _rec("half", "A", 0, "8"), _rec("half", "B", 0, "8"), _rec("half", "C", 0, None),  # 2 of 4
               _rec("half", "D", 0, None, error="HTTP 500: boom"),  # a failed request is no response: 2 of 3
               _rec("one", "A", 0, "8")]  # a single response is one vote: under min_votes 2
    result, sets = _filter(tmp_path, questions, records, mode="majority", quorum=0.5)
    assert set(sets) == {"half"}
    assert {result.per_question[q].note for q in ("lone", "few", "one")} == {"no majority"}
    assert result.per_teacher["A"]["wrong"] == 3  # lone, few and one: nothing agreed on
    _, sets = _filter(tmp_path, questions, records, mode="majority", quorum=0.5, min_votes=1)
    assert set(sets) == {"half", "one"}


def test_majority_answer_is_the_agreed_one_and_gold_disagreement_warns(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    questions = [{"id": "q", "problem": "p", "answer": "8"}, {"id": "ok", "problem": "p2", "answer": "0.5"}]
    records = [_rec("q", "A", 0, "3"), _rec("q", "B", 0, "3"), _rec("q", "C", 0, "8"),
               _rec("ok", "A", 0, "\\frac{1}{2}"), _rec("ok", "B", 0, "1/2")]
    result, sets = _filter(tmp_path, questions, records, mode="majority")
    assert sets["q"].answer == "3" and all("\\boxed{3}" in t.text for t in sets["q"].traces)
    assert sets["ok"].answer == "\\frac{1}{2}"  # equivalent to the gold answer: no warning for it
    assert result.per_question["q"].gold_disagrees and not result.per_question["ok"].gold_disagrees
    err = capsys.readouterr().err
    assert "1 question(s) kept by majority disagree with their gold answer" in err and "majority '3'" in err


def test_synthetic_questions_use_the_synthetic_judge(tmp_path: Path) -> None:
    """Synthetic answers ('answer=7') mean nothing to Math-Verify: the task's own checker must judge them."""
    from forkctl.tasks.synthetic import SyntheticTask, parse_problem, solve

    q0, q1 = SyntheticTask().load()[:2]
    p0, p1 = parse_problem(q0.problem), parse_problem(q1.problem)
    wrong = solve(p0, "forward").rsplit("=", 1)[0] + f"={(p0.answer + 1) % 10}"
    records = [_rec(q0.id, "A", 0, None, text=solve(p0, "forward")), _rec(q0.id, "B", 0, None, text=wrong),
               _rec(q0.id, "C", 0, None, text=solve(p0, "backward")),
               _rec(q1.id, "A", 0, None, text=solve(p1, "direct"))]
    result, sets = _filter(tmp_path, "synthetic", records, dedup_threshold=1.0)
    assert set(sets) == {q0.id, q1.id}
    assert [t.teacher for t in sets[q0.id].traces] == ["A", "C"] and sets[q0.id].answer == str(p0.answer)
    assert result.per_teacher["B"]["wrong"] == 1
    # Majority mode groups by the synthetic answer too: the two correct traces outvote the wrong one.
    _, sets = _filter(tmp_path, "synthetic", records, mode="majority", dedup_threshold=1.0)
    assert set(sets) == {q0.id} and sets[q0.id].answer == str(p0.answer)


def test_filter_keeping_nothing_exits_non_zero(tmp_path: Path) -> None:
    qpath, tpath = _files(tmp_path, [{"id": "q", "problem": "p", "answer": "2"}], [_rec("q", "A", 0, "5")])
    out = tmp_path / "sets.jsonl"
    proc = subprocess.run([sys.executable, "-m", "forkctl", "filter", "--traces", str(tpath), "--task", str(qpath),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FORKCTL_DEBUG": ""})
    assert proc.returncode == 2, proc.stderr
    assert "kept no trace sets: 1 no correct traces" in proc.stderr and proc.stderr.count("error:") == 1
    assert out.exists() and out.with_name("sets.summary.json").exists()
    assert "per question" in proc.stdout  # the summary tables, shown before the refusal


def test_code_traces_are_kept_when_their_program_passes_every_test(tmp_path: Path) -> None:
    """Code questions (a LiveCodeBench-style file) are judged by running the programs: the failing trace goes."""
    from tests.code_cases import DAYS_MAIN_GUARD, DAYS_WRONG, SECOND_LARGEST, load_sample

    rows = load_sample()
    questions = [rows["lcb-v5-000"], rows["lcb-v5-001"]]
    fence = "```"
    records = [_rec(q, t, 0, None, text=f"Plan first.\n{fence}python\n{code.strip()}\n{fence}\n")
               for q, t, code in [("lcb-v5-000", "a", SECOND_LARGEST), ("lcb-v5-000", "b", DAYS_WRONG),
                                  ("lcb-v5-001", "a", DAYS_MAIN_GUARD), ("lcb-v5-001", "b", DAYS_WRONG)]]
    result, sets = _filter(tmp_path, questions, records, dedup_threshold=1.0)
    kept = {qid: [t.teacher for t in ts.traces] for qid, ts in sets.items()}
    assert kept == {"lcb-v5-000": ["a"], "lcb-v5-001": ["a"]}

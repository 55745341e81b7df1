"""Math answers: extraction, Math-Verify equivalence, and the time bound on pathological answers."""

import time

import pytest

from forkctl.verify.math import MathJudge, extract_answer, judge_answers, normalize


@pytest.mark.parametrize("text,expected", [
    ("so the answer is \\boxed{42}.", "42"),
    ("first \\boxed{1} then \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("nested \\boxed{\\sqrt{\\frac{3}{4}}} done", "\\sqrt{\\frac{3}{4}}"),
    ("The final answer is 17.", "17"),
    ("Answer: $x+1$", "x+1"),
    ("no answer here", None),
    ("unclosed \\boxed{12", None),
    # The forms real models write (issue 14), each as a row: text -> the answer.
    ("The answer is: 8", "8"),
    ("The answer is:\n\n$$8$$", "8"),
    ("the final answer is: $8$", "8"),
    ("The answer is $\\text{8.}$", "8"),
    ("#### 8", "8"),
    ("Natalia sold 48 clips.\n#### 72", "72"),
    ("Final answer: 8", "8"),
    ("The answer is **8**", "8"),
    ("**Final Answer:** 8", "8"),
    ("We simplify.\n\n$$\\frac{1}{2}$$", "\\frac{1}{2}"),
    ("We simplify.\n\\[ 12 \\]", "12"),
    ("The answer is 3.5.", "3.5"),
    ("answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
    ("The answer is \\boxed{5}. Then answer: 7", "5"),  # boxed stays first
    ("The answer is $\\boxed{4}$ indeed", "4"),
    ("First #### 3\nThe answer is 4", "4"),  # the last labelled answer wins
    ("He answered: 5", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_judge_answers_groups_equivalent_forms():
    j = judge_answers("0.5", ["\\frac{1}{2}", "1/2", "0.5", None, "2", "\\dfrac{1}{2}"])
    assert j.correct == [True, True, True, False, False, True]
    assert j.classes[0] == j.classes[1] == j.classes[2] == j.classes[5]
    assert j.classes[3] is None
    assert j.classes[4] != j.classes[0]


def test_judge_without_gold_only_groups():
    j = judge_answers(None, ["3", "3.0", "4"])
    assert j.correct == [None, None, None]
    assert j.classes == [0, 0, 1]


def test_normalize_fast_path():
    assert normalize("$\\dfrac{1}{2}$") == normalize("\\frac{1}{2}")
    assert normalize("\\text{ 12 }") == "12"


def test_judge_pool_matches_in_process():
    judge = MathJudge(workers=1)
    try:
        items = [("25", ["25", "025", "24"]), ("\\frac{1}{2}", ["0.5", None]), ("3", [None, None])]
        assert [g.correct for g in judge.judge_many(items)] == [[True, True, False], [True, False], [False, False]]
    finally:
        judge.close()


HANG = "\\boxed{" + "9^{" * 40 + "9" + "}" * 40 + "}"


def test_pathological_answer_cannot_hang_the_judge():
    judge = MathJudge(workers=1, timeout_s=2.0, per_answer_s=0.0)
    try:
        start = time.monotonic()
        [j1, j2] = judge.judge_many([("1", ["1", HANG]), ("7", ["7"])])
        elapsed = time.monotonic() - start
        assert elapsed < 30
        assert j1.correct[0] is True and j1.correct[1] is False
        assert j2.correct == [True]
    finally:
        judge.close()

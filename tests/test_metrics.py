"""Exact metric values on hand-built sample sets."""

import math

import pytest

from forkctl.metrics import Vote, cons_at_k, cons_native, majority_correct, nmi, pass_at_k, summarize


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    return 1 - math.comb(n - c, k) / math.comb(n, k)


@pytest.mark.parametrize("n,c,k", [(1, 0, 1), (1, 1, 1), (4, 1, 1), (4, 1, 2), (4, 2, 4), (8, 3, 5), (16, 0, 8),
                                   (16, 16, 16), (32, 5, 8), (5, 5, 3)])
def test_pass_at_k_matches_combinatorial_formula(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_refuses_k_larger_than_n():
    with pytest.raises(ValueError, match="needs at least 3 samples"):
        pass_at_k(2, 1, 3)


def test_pass_at_1_is_the_fraction_correct_and_k_equal_n_is_any_correct():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(4, 0, 4) == 0.0


def v(cls, correct=False):
    return Vote(cls, correct)


def test_majority_picks_largest_class():
    votes = [v(1), v(0, True), v(0, True), v(2)]
    assert majority_correct(votes) is True


def test_tie_goes_to_first_answer_encountered():
    assert majority_correct([v(0, True), v(1), v(1), v(0, True)]) is True
    assert majority_correct([v(1), v(0, True), v(0, True), v(1)]) is False


def test_missing_answers_vote_for_none_and_none_never_counts():
    assert majority_correct([v(None), v(None), v(0, True)]) is False
    assert majority_correct([v(None), v(0, True), v(0, True)]) is True
    # a tie between "none" (seen first) and a correct answer goes to "none"
    assert majority_correct([v(None), v(0, True)]) is False


def test_cons_at_k_uses_the_first_k_samples():
    votes = [v(0, True), v(1), v(1), v(1)]
    assert cons_at_k(votes, 1) is True
    assert cons_at_k(votes, 2) is True  # tie 1-1, first seen wins
    assert cons_at_k(votes, 3) is False
    assert cons_at_k(votes, 4) is False
    with pytest.raises(ValueError):
        cons_at_k(votes, 5)


def test_cons_native_groups_the_s_th_sample_of_each_token():
    # N=2 tokens, S=2 samples per token, interleaved: forks 1,2,1,2
    forks = [1, 2, 1, 2]
    # group 0 = samples 0 (fork1) and 1 (fork2): [correct A, wrong B] -> tie -> first (fork 1 order) = A correct
    # group 1 = samples 2 and 3: [wrong B, wrong B] -> wrong
    votes = [v(0, True), v(1), v(1), v(1)]
    assert cons_native(votes, forks) == pytest.approx(0.5)


def test_cons_native_with_three_tokens():
    forks = [1, 2, 3, 1, 2, 3]
    votes = [v(0, True), v(0, True), v(1), v(2), v(2), v(0, True)]
    # group 0: A A B -> A correct; group 1: C C A -> C wrong
    assert cons_native(votes, forks) == pytest.approx(0.5)


def test_summarize_on_a_hand_built_set():
    questions = {
        "q1": [(v(0, True), 1), (v(1), 2), (v(0, True), 1), (v(1), 2)],
        "q2": [(v(None), 1), (v(None), 2), (v(3, True), 1), (v(4), 2)],
    }
    m = summarize(questions, ks=[1, 2, 4], native=True)
    assert m["pass@1"] == pytest.approx((0.5 + 0.25) / 2)
    assert m["pass@2"] == pytest.approx((brute_pass_at_k(4, 2, 2) + brute_pass_at_k(4, 1, 2)) / 2)
    assert m["pass@4"] == pytest.approx(1.0)
    assert m["cons@1"] == pytest.approx(0.5)  # q1 first sample correct, q2 first is none
    assert m["cons@2"] == pytest.approx(0.5)  # q1 tie -> first (correct); q2 none
    assert m["cons@4"] == pytest.approx(0.5)  # q1 tie 2-2 -> first correct; q2 none wins
    # q1: groups {s0 f1 A, s1 f2 B} -> A; {A, B} -> A  => 1.0 ; q2: {none, none} -> 0 ; {C, D} -> C correct => 0.5
    assert m["cons@native"] == pytest.approx(0.75)
    assert m["per_fork"] == {"1": {"n": 4, "accuracy": 0.75}, "2": {"n": 4, "accuracy": 0.0}}


def test_summarize_refuses_k_larger_than_samples():
    with pytest.raises(ValueError, match="larger than the number of samples"):
        summarize({"q": [(v(0, True), None)]}, ks=[2], native=False)


def test_nmi():
    assert nmi([1, 1, 2, 2], ["a", "a", "b", "b"]) == pytest.approx(1.0)
    assert nmi([1, 2, 1, 2], ["a", "a", "b", "b"]) == pytest.approx(0.0)
    assert nmi([1, 1, 1, 1], ["a", "b", "a", "b"]) == 0.0
    assert 0 < nmi([1, 1, 2, 2, 3, 3], ["a", "a", "b", "b", "b", "a"]) < 1

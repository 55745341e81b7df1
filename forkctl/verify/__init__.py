"""Answer verification: math (Math-Verify in a bounded process pool)."""

from forkctl.verify.math import Judgement, MathJudge, extract_answer, get_math_judge, judge_answers

__all__ = ["Judgement", "MathJudge", "extract_answer", "get_math_judge", "judge_answers"]

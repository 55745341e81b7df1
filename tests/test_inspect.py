"""forkctl inspect on small hand-built runs: every number below is worked out by hand in the comments."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from forkctl import analysis
from forkctl.errors import UserError
from forkctl.inspect import run_inspect
from forkctl.metrics import nmi


# --------------------------------------------------------------------------------------------------
# Fixture runs


def _sample(qid: str, j: int, fork: int | None, answer: str | None, correct: bool, tokens: int, text: str,
            finish: str = "stop", **extra: object) -> dict:
    return {"question_id": qid, "sample": j, "fork": fork, "text": text, "answer": answer, "correct": correct,
            "num_tokens": tokens, "finish_reason": finish, **extra}


def _write_eval(path: Path, samples: list[dict], config: dict) -> Path:
    path.mkdir(parents=True)
    (path / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (path / "metrics.json").write_text(json.dumps({"config": config, "metrics": {}}))
    return path


# Run A: fork=all, 2 tokens, 2 questions x 4 samples (tokens interleaved 1,2,1,2). q1's gold is 5, q2's is 3.
#   q1: s0 t1 "5" ok  10 tok | s1 t2 "7" wrong 20 | s2 t1 "5" ok 30 | s3 t2 no answer 40 (truncated)
#   q2: s0 t1 "4" wrong 50   | s1 t2 "3" ok 60    | s2 t1 "4" wrong 110 | s3 t2 "4" wrong 80
A_SAMPLES = [
    _sample("q1", 0, 1, "5", True, 10, "alpha beta gamma", strategy="forward"),
    _sample("q1", 1, 2, "7", False, 20, "delta epsilon", strategy="backward"),
    _sample("q1", 2, 1, "5", True, 30, "alpha beta", strategy="forward"),
    _sample("q1", 3, 2, None, False, 40, "delta epsilon alpha", finish="length", strategy="backward"),
    _sample("q2", 0, 1, "4", False, 50, "alpha", strategy="forward"),
    _sample("q2", 1, 2, "3", True, 60, "delta", strategy="backward"),
    _sample("q2", 2, 1, "4", False, 110, "alpha", strategy="forward"),
    _sample("q2", 3, 2, "4", False, 80, "delta", strategy="direct"),
]

# Run B: the same questions, other verdicts (all 10 tokens long).
#   q1: "5" ok, "7", "7", "7"   -> 1/4 correct (A had 2/4): a loss of 25 points; vote "7": wrong (A's: right)
#   q2: "3" ok, "3" ok, "4", "3" ok -> 3/4 correct (A had 1/4): a gain of 50 points; vote right (A's: wrong)
B_SAMPLES = [
    _sample("q1", 0, 1, "5", True, 10, "x"), _sample("q1", 1, 2, "7", False, 10, "x"),
    _sample("q1", 2, 1, "7", False, 10, "x"), _sample("q1", 3, 2, "7", False, 10, "x"),
    _sample("q2", 0, 1, "3", True, 10, "x"), _sample("q2", 1, 2, "3", True, 10, "x"),
    _sample("q2", 2, 1, "4", False, 10, "x"), _sample("q2", 3, 2, "3", True, 10, "x"),
]

# Policy run: the model chose tokens 1,1,2,1 for q1's four samples; verdicts ok, wrong, ok, ok.
POLICY_SAMPLES = [
    _sample("q1", 0, 1, "5", True, 10, "a"), _sample("q1", 1, 1, "6", False, 20, "b"),
    _sample("q1", 2, 2, "5", True, 30, "c"), _sample("q1", 3, 1, "5", True, 40, "d"),
]

# SSFT matching log, 2 tokens, 2 traces per question; question qb was handled by a second process.
#   step 1 qa: [1,2]  C=[[1,3],[2,.5]]  matched (C[0][0] + C[1][1]) / 2 = (1 + .5) / 2 = .75
#   step 1 qb: [2,1]  C=[[2,1],[1,4]]   matched (C[1][0] + C[0][1]) / 2 = (1 + 1) / 2 = 1.0   -> step 1: .875
#   step 2 qa: [1,2]  C=[[.5,2],[1.5,.3]] (.5 + .3) / 2 = .4
#   step 2 qb: [1,2]  C=[[.2,1],[1,.4]]  (.2 + .4) / 2 = .3   (changed since step 1)           -> step 2: .35
#   step 3 qa: [1,2]  C=[[.1,1],[1,.1]]  (.1 + .1) / 2 = .1                                      -> step 3: .1
MATCHING_RANK0 = [
    {"step": 1, "epoch": 1.0, "question_id": "qa", "matching": "bipartite", "assignment": [1, 2],
     "traces": ["forward", "backward"], "cost": [[1.0, 3.0], [2.0, 0.5]]},
    {"step": 2, "epoch": 2.0, "question_id": "qa", "matching": "bipartite", "assignment": [1, 2],
     "traces": ["forward", "backward"], "cost": [[0.5, 2.0], [1.5, 0.3]]},
    {"step": 3, "epoch": 3.0, "question_id": "qa", "matching": "bipartite", "assignment": [1, 2],
     "traces": ["forward", "backward"], "cost": [[0.1, 1.0], [1.0, 0.1]]},
]
MATCHING_RANK1 = [
    {"step": 1, "epoch": 1.0, "question_id": "qb", "matching": "bipartite", "assignment": [2, 1],
     "traces": ["forward", "backward"], "cost": [[2.0, 1.0], [1.0, 4.0]]},
    {"step": 2, "epoch": 2.0, "question_id": "qb", "matching": "bipartite", "assignment": [1, 2],
     "traces": ["forward", "backward"], "cost": [[0.2, 1.0], [1.0, 0.4]]},
]

GFPO_LOG = [
    {"step": 1, "reward_mean": 0.2, "pi_mean": [0.5, 0.5], "pi_entropy": 0.69, "pi_mean_entropy": 0.69,
     "zero_variance_frac": 0.5, "truncated_frac": 0.1, "loss": 0.3, "chosen": {"1": 2, "2": 2}},
    {"step": 2, "reward_mean": 0.4, "pi_mean": [0.6, 0.4], "pi_entropy": 0.6, "pi_mean_entropy": 0.67,
     "zero_variance_frac": 0.25, "truncated_frac": 0.0, "loss": 0.2, "chosen": {"1": 3, "2": 1}},
    {"step": 3, "reward_mean": 0.6, "pi_mean": [0.8, 0.2], "pi_entropy": 0.5, "pi_mean_entropy": 0.5,
     "zero_variance_frac": 0.0, "truncated_frac": 0.0, "loss": 0.1, "chosen": {"1": 4}},
]


@pytest.fixture()
def runs(tmp_path: Path) -> dict[str, Path]:
    a = _write_eval(tmp_path / "ssft_eval", A_SAMPLES, {"fork": "all", "fork_mode": "all", "k": [1, 2], "n": 4,
                                                        "task": "synthetic"})
    b = _write_eval(tmp_path / "mixed_eval", B_SAMPLES, {"fork": "all", "fork_mode": "all", "k": [1, 2], "n": 4})
    p = _write_eval(tmp_path / "policy_eval", POLICY_SAMPLES, {"fork": "policy", "fork_mode": "policy", "k": [1]})
    none = _write_eval(tmp_path / "none_eval", [_sample("q1", 0, None, "5", True, 7, "t"),
                                                _sample("q1", 1, None, None, False, 9, "u", finish="length")],
                       {"fork": "none", "k": [1]})
    ssft = tmp_path / "ssft"
    ssft.mkdir()
    (ssft / "matching.jsonl").write_text("".join(json.dumps(e) + "\n" for e in MATCHING_RANK0))
    (ssft / "matching.rank1.jsonl").write_text("".join(json.dumps(e) + "\n" for e in MATCHING_RANK1))
    (ssft / "ssft_summary.json").write_text(json.dumps({"train_loss": 1.2345, "global_step": 3,
                                                        "matching": "bipartite", "num_forks": 2}))
    gfpo = tmp_path / "gfpo"
    gfpo.mkdir()
    (gfpo / "gfpo_log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in GFPO_LOG))
    return {"a": a, "b": b, "policy": p, "none": none, "ssft": ssft, "gfpo": gfpo}


def _console() -> Console:
    return Console(width=80, record=True, file=io.StringIO(), color_system=None)


def _inspect(*args: object, **kwargs: object) -> tuple[object, str]:
    console = _console()
    result = run_inspect([str(a) for a in args], console=console, **kwargs)
    return result, console.export_text()


# --------------------------------------------------------------------------------------------------
# Eval run: per token, pass@k / cons@k, coverage, diversity


def test_per_token_table(runs: dict[str, Path]) -> None:
    report, _ = _inspect(runs["a"], fmt="json")
    t1, t2 = report["per_fork"]["1"], report["per_fork"]["2"]
    # <think1>: q1 s0 (10 ok), q1 s2 (30 ok), q2 s0 (50), q2 s2 (110): 2/4 correct; mean (10+30+50+110)/4 = 50;
    # median of 10,30,50,110 = (30+50)/2 = 40; p90 nearest rank: ceil(.9*4) = 4th smallest = 110
    assert t1 == pytest.approx({"n": 4, "questions": 2, "accuracy": 0.5, "mean_tokens": 50.0, "median_tokens": 40.0,
                                "p90_tokens": 110.0, "truncation_rate": 0.0, "no_answer_rate": 0.0,
                                # q1 answers {5}, q2 {4}: (1 + 1) / 2
                                "distinct_answers": 1.0})
    # <think2>: 20, 40 (truncated, no answer), 60 (ok), 80: 1/4 correct; mean 200/4 = 50; median (40+60)/2 = 50;
    # p90 = 80; truncated 1/4; no answer 1/4; distinct answers q1 {7} = 1, q2 {3, 4} = 2 -> 1.5
    assert t2 == pytest.approx({"n": 4, "questions": 2, "accuracy": 0.25, "mean_tokens": 50.0, "median_tokens": 50.0,
                                "p90_tokens": 80.0, "truncation_rate": 0.25, "no_answer_rate": 0.25,
                                "distinct_answers": 1.5})
    assert report["fork_mode"] == "all" and report["task"] == "synthetic"


def test_pass_and_cons(runs: dict[str, Path]) -> None:
    report, _ = _inspect(runs["a"], fmt="json")
    m = report["metrics"]
    # q1: 2 of 4 correct, q2: 1 of 4. pass@1 = (2/4 + 1/4) / 2 = .375
    # pass@2: q1 1 - C(2,2)/C(4,2) = 5/6, q2 1 - C(3,2)/C(4,2) = 1/2 -> (5/6 + 1/2) / 2 = 2/3; pass@4 = 1
    assert m["pass@1"] == pytest.approx(0.375)
    assert m["pass@2"] == pytest.approx(2 / 3)
    assert m["pass@4"] == pytest.approx(1.0)  # k = 4 (all samples) added to the config's k 1, 2
    # cons@1: q1's first sample right, q2's wrong -> .5; cons@2: q1 tie ok/"7", first seen (ok) wins -> 1,
    # q2 tie "4"/ok -> "4" -> 0 -> .5; cons@4: q1 ok 2 votes -> 1; q2 "4" 3 votes -> 0 -> .5
    assert (m["cons@1"], m["cons@2"], m["cons@4"]) == (0.5, 0.5, 0.5)
    # cons@native: q1 groups {s0 ok, s1 "7"} -> ok (tie, token 1 first), {s2 ok, s3 none} -> ok: 1;
    # q2 {s0 "4", s1 ok} -> "4", {s2 "4", s3 "4"} -> "4": 0 -> .5
    assert m["cons@native"] == pytest.approx(0.5)
    assert m["accuracy"] == pytest.approx(3 / 8)
    assert [round(p["pass"], 4) for p in report["pass_curve"]] == [0.375, round(2 / 3, 4), 0.875, 1.0]
    # pass@3: q1 1 - C(2,3)/C(4,3) = 1, q2 1 - C(3,3)/C(4,3) = 3/4 -> .875


def test_coverage(runs: dict[str, Path]) -> None:
    report, _ = _inspect(runs["a"], fmt="json")
    cov = report["coverage"]
    # <think1> solves q1 (2/2) and not q2 (0/2); <think2> solves q2 (1/2) and not q1: each solves one, alone
    assert cov["per_fork"]["1"] == {"solves": 1, "only": 1, "only_ids": ["q1"]}
    assert cov["per_fork"]["2"] == {"solves": 1, "only": 1, "only_ids": ["q2"]}
    assert cov["per_question"]["q1"]["by_fork"] == {"1": [2, 2], "2": [0, 2]}
    # some token solves both; the vote only q1 (q2's "4" has 3 of 4 votes): q2 is lost by the vote
    assert (cov["any"], cov["vote"], cov["lost_by_vote"]) == (2, 1, ["q2"])


def test_diversity_and_strategy(runs: dict[str, Path]) -> None:
    d, _ = _inspect(runs["a"], fmt="json")
    d = d["diversity"]
    # answer classes q1: ok, "7", ok, none; q2: "4", ok, "4", "4"
    # q1 across-token pairs (0,1) (0,3) (1,2) (2,3) all differ: 1; within (0,2) same, (1,3) "7"/none differ: .5
    # q2 across (0,1) differ, (0,3) same, (1,2) differ, (2,3) same: .5; within (0,2) same, (1,3) differ: .5
    assert d["disagree_across"] == pytest.approx((1 + 0.5) / 2)
    assert d["disagree_within"] == pytest.approx(0.5)
    # texts are under 5 words, so shingles are word sets.
    # q1 across: {a,b,g}/{d,e} 0; {a,b,g}/{d,e,a} 1/5; {d,e}/{a,b} 0; {a,b}/{d,e,a} 1/4 -> .45/4 = .1125
    #    within: {a,b,g}/{a,b} 2/3; {d,e}/{d,e,a} 2/3 -> 2/3
    # q2 across: alpha vs delta 0 (all four pairs); within: alpha/alpha 1, delta/delta 1 -> 1
    assert d["similar_across"] == pytest.approx((0.1125 + 0) / 2)
    assert d["similar_within"] == pytest.approx((2 / 3 + 1) / 2)
    # strategy by token: <think1> forward x4; <think2> backward x3, direct x1
    assert d["strategy_by_fork"] == {"1": {"forward": 4}, "2": {"backward": 3, "direct": 1}}
    # the strategy determines the token, so I = H(token) = ln 2; H(strategy) over (4, 3, 1)/8
    h_strategy = -sum(p * math.log(p) for p in (4 / 8, 3 / 8, 1 / 8))
    assert d["nmi"] == pytest.approx(math.log(2) / math.sqrt(math.log(2) * h_strategy))
    assert d["nmi"] == pytest.approx(nmi([1] * 4 + [2] * 4, ["f"] * 4 + ["b"] * 3 + ["d"]))


def test_policy_and_none_runs(runs: dict[str, Path]) -> None:
    report, text = _inspect(runs["policy"], fmt="json")
    pf = report["per_fork"]
    assert list(pf) == ["policy", "1", "2"]
    # all: 3 of 4 correct; token 1 chosen 3/4 times, right 2 of them; token 2 chosen 1/4, right once
    assert pf["policy"]["accuracy"] == pytest.approx(0.75)
    assert (pf["1"]["chosen_rate"], pf["1"]["accuracy"]) == pytest.approx((0.75, 2 / 3))
    assert (pf["2"]["chosen_rate"], pf["2"]["accuracy"]) == pytest.approx((0.25, 1.0))
    report, _ = _inspect(runs["none"], fmt="json")
    # fork null: one "none" row; 1 of 2 right, one truncated without answer; mean (7+9)/2 = 8
    assert list(report["per_fork"]) == ["none"]
    assert report["per_fork"]["none"] == pytest.approx(
        {"n": 2, "questions": 1, "accuracy": 0.5, "mean_tokens": 8.0, "median_tokens": 8.0, "p90_tokens": 9.0,
         "truncation_rate": 0.5, "no_answer_rate": 0.5, "distinct_answers": 1.0})
    assert report["diversity"]["disagree_across"] is None  # one token: no across pair


# --------------------------------------------------------------------------------------------------
# SSFT and GFPO logs


def test_ssft_matching(runs: dict[str, Path]) -> None:
    report, _ = _inspect(runs["ssft"], fmt="json")
    s = report["ssft"]
    assert (s["questions"], s["steps"], s["entries"]) == (2, 3, 5)  # both ranks' logs read
    # last assignments: qa (step 3) and qb (step 2) both [1, 2] over (forward, backward)
    assert s["token_source"] == {"1": {"forward": 2}, "2": {"backward": 2}}
    assert s["nmi"] == pytest.approx(1.0)
    # every step: qa 3x (1 fwd, 2 bwd); qb step 1 (2 fwd, 1 bwd), step 2 (1 fwd, 2 bwd)
    assert s["token_source_all"] == {"1": {"backward": 1, "forward": 4}, "2": {"backward": 4, "forward": 1}}
    # visit 2: qa same, qb changed; visit 3: only qa, same -> 1 change in 3 revisits
    assert s["switches"] == [{"visit": 2, "questions": 2, "changed": 1}, {"visit": 3, "questions": 1, "changed": 0}]
    assert s["switch_rate"] == pytest.approx(1 / 3)
    assert s["questions_ever_changed"] == 1
    assert [c["step"] for c in s["cost_by_step"]] == [1, 2, 3]
    assert [c["cost"] for c in s["cost_by_step"]] == pytest.approx([0.875, 0.35, 0.1])
    assert s["summary"]["train_loss"] == 1.2345


def test_gfpo_log(runs: dict[str, Path]) -> None:
    report, text = _inspect(runs["gfpo"])
    g = report["gfpo"]
    assert g["steps"] == 3 and g["num_forks"] == 2
    assert g["series"]["reward_mean"] == [0.2, 0.4, 0.6]
    assert g["summary"]["pi_mean"] == {"first": [0.5, 0.5], "last": [0.8, 0.2]}
    assert "0.80 0.20" in text and "reward 0.200 -> 0.600" in text


def test_bins() -> None:
    # 5 steps in 2 rows: edges round(0), round(2.5) = 2, 5 -> steps 0-1 and 2-4
    assert analysis.bins(5, 2) == [(0, 2), (2, 5)]
    assert analysis.binned_mean([1, 2, 3, 4, 5], [(0, 2), (2, 5)]) == [1.5, 4.0]
    assert analysis.binned_vectors([[1, 0], [0, 1], [1, 1]], [(0, 2), (2, 3)]) == [[0.5, 0.5], [1.0, 1.0]]
    assert analysis.bins(3, 12) == [(0, 1), (1, 2), (2, 3)]
    assert analysis.percentile([5, 1, 3], 90) == 5  # ceil(.9 * 3) = 3rd smallest


# --------------------------------------------------------------------------------------------------
# Several runs, question view, formats, plots, errors


def test_compare_runs(runs: dict[str, Path]) -> None:
    reports, text = _inspect(runs["a"], runs["b"], runs["ssft"], fmt="json")
    assert [r["label"] for r in reports] == ["A", "B", "C"] and "compare" not in reports[0]
    c = reports[1]["compare"]
    # accuracy: A 3/8, B (1 + 3)/8 = 1/2; <think2>: A 1/4, B (q2 s1, s3 right) 2/4
    assert c["metrics"]["accuracy"] == pytest.approx({"base": 0.375, "other": 0.5, "delta": 0.125})
    assert c["metrics"]["acc <think2>"]["delta"] == pytest.approx(0.25)
    q = c["questions"]
    # q2: 1/4 -> 3/4 (+.5); q1: 2/4 -> 1/4 (-.25); the vote flips right on q2 and wrong on q1
    assert [(g["question_id"], g["delta"]) for g in q["gains"]] == [("q2", 0.5)]
    assert [(g["question_id"], g["delta"]) for g in q["losses"]] == [("q1", -0.25)]
    assert (q["vote_gained"], q["vote_lost"], q["common"]) == (1, 1, 2)
    assert "ssft" in reports[2]


def test_tables_fit_80_columns(runs: dict[str, Path]) -> None:
    _, text = _inspect(runs["a"], runs["b"], runs["policy"], runs["none"], runs["ssft"], runs["gfpo"],
                       question="q1")
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text  # rich never cut a cell: every column folds instead
    for title in ("A · per token · fork all", "A · coverage", "A · diversity across tokens", "A · strategy by token",
                  "A · question q1", "C · per token · fork policy", "E · SSFT: source by token",
                  "E · SSFT: matched cost", "F · GFPO over steps", "comparison with A", "per question: B vs A"):
        assert title in text, title
    assert "lost by the vote (1): q2" in text
    assert "NMI(token; strategy) = 0.843" in text  # ln2 / sqrt(ln2 * 0.97431) = .84346


def test_question_view(runs: dict[str, Path]) -> None:
    report, text = _inspect(runs["a"], question="q1")
    q = report["question"]
    # grouped by token: <think1> samples 0, 2, then <think2> samples 1, 3
    assert [(s["fork"], s["sample"]) for s in q["samples"]] == [("1", 0), ("1", 2), ("2", 1), ("2", 3)]
    assert "unjudged" not in text and "wrong" in text and "length" in text
    long = [dict(s) for s in A_SAMPLES]
    long[0]["text"] = " ".join(f"word{i}" for i in range(40)) + " so the answer is 5"
    path = _write_eval(Path(runs["a"]).parent / "long", long, {"fork": "all"})
    _, short = _inspect(path, question="q1")
    assert "... word38 word39 so the answer is" in short and "word0 " not in short  # the end is shown, cut with ...
    _, full = _inspect(path, question="q1", full=True)
    assert "word0 word1" in full and max(map(len, full.splitlines())) <= 80
    report, md = _inspect(path, question="q1", full=True, fmt="markdown")
    assert "```\n" + long[0]["text"] + "\n```" in md


def test_formats_parse(runs: dict[str, Path]) -> None:
    reports, out = _inspect(runs["a"], runs["b"], fmt="json")
    assert json.loads(out) == reports
    assert set(reports[0]["per_fork"]["1"]) >= {"n", "accuracy", "mean_tokens", "median_tokens", "p90_tokens",
                                                "truncation_rate", "no_answer_rate"}
    _, md = _inspect(runs["a"], fmt="markdown")
    blocks = [b for b in md.split("### ") if b.strip()]
    for block in blocks:
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len(rows) >= 3 and len({row.count(" | ") for row in rows[:1] + rows[2:]}) == 1
        assert set(rows[1].replace("|", "").split()) <= {"---", "---:"}
    assert "| \\<think1> | 4 | 50.0 | 50.0 | 40.0 | 110 | 0.0 | 0.0 | 1.00 |" in md  # "<" escaped: not an HTML tag
    _, text = _inspect(runs["a"], fmt="csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    cell = {(r["table"], r["row"], r["column"]): r["value"] for r in rows}
    assert float(cell[("per_token", "<think2>", "trunc %")]) == 0.25  # raw fractions in CSV
    assert float(cell[("pass_cons", "2", "pass@k %")]) == pytest.approx(2 / 3)


def test_plots(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "plots"
    run_inspect([str(runs["a"]), str(runs["ssft"]), str(runs["gfpo"])], plot_dir=str(out), console=_console())
    names = sorted(p.name for p in out.iterdir())
    assert names == ["A-ssft_eval-accuracy.png", "A-ssft_eval-lengths.png", "B-ssft-matched-cost.png",
                     "C-gfpo-gfpo.png", "passk.png"]
    for p in out.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000


def test_user_errors(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such directory"):
        run_inspect([str(tmp_path / "missing")], console=_console())
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not an eval, SSFT or GFPO output"):
        run_inspect([str(tmp_path / "empty")], console=_console())
    with pytest.raises(UserError, match="question 'q9' is in no given eval run"):
        run_inspect([str(runs["a"])], question="q9", console=_console())
    with pytest.raises(UserError, match="unknown format"):
        run_inspect([str(runs["a"])], fmt="xml", console=_console())
    # a path to samples.jsonl stands for its folder
    report = run_inspect([str(runs["a"] / "samples.jsonl")], fmt="json", console=_console())
    assert report["per_fork"]["1"]["n"] == 4


def test_similarity_cost_caps() -> None:
    from forkctl.records import Sample

    questions = analysis.by_question(Sample.from_dict(s) for s in A_SAMPLES)
    # one text per token per question: q1 compares s0 {alpha,beta,gamma} with s1 {delta,epsilon}: 0; q2 alpha vs
    # delta: 0; no same-token pair is left. Disagreement still uses every pair (.75 / .5 as above).
    d = analysis.diversity(questions, texts_per_token=1)
    assert (d["similar_across"], d["similar_within"]) == (0.0, None)
    assert (d["disagree_across"], d["disagree_within"]) == pytest.approx((0.75, 0.5))
    # one seeded pair of each kind: q1's across value is one of its four pairs' (0, 1/5, 0, 1/4), q2's is 0
    d = analysis.diversity(questions, max_pairs=1)
    assert d["similar_across"] * 2 in (0.0, 0.2, 0.25)
    assert d == analysis.diversity(questions, max_pairs=1)  # the same pairs every time

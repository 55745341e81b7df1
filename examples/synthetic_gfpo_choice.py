"""GFPO where the best forking token depends on the question (issue 10): does π learn *which token for which
question*, not just the best token overall?

    python examples/synthetic_gfpo_choice.py              # ~10 min on 2 cores, everything from scratch

The task (``synthetic-choice``, :mod:`forkctl.tasks.synthetic`): "first of: 3 7 2 9" asks for the first digit,
"last of: ..." for the last. Trace sets hold both modes for every question (``front=3 answer=3`` and
``back=9 answer=9``, one of them wrong), so SSFT ties each forking token to a mode whatever the keyword: each
fixed token is right on one half of the questions (~50%), choosing per question by the keyword scores ~100%.

Steps: a fresh tiny base and SSFT (bipartite, 2 tokens; skipped when ``--workdir`` has them), pass@1 on held-out
questions with each fixed token and the per-question oracle (the best token per question, from those samples),
then ``forkctl gfpo`` with its DEFAULT learning settings (only the step budget, the batch and the task's length
budget are given) for each estimator and ``--train`` mode, and after each: policy pass@1, fixed-token pass@1 and
the mean π entropy over steps. The table checks issue 10's "done when": fork-head policy ≥ best fixed +
0.8 × (oracle − best fixed), full ≥ half that gain, fixed tokens within 2 points. Results: ``--workdir``/report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="runs/synthetic_gfpo_choice")
    ap.add_argument("--ssft-steps", type=int, default=400)
    ap.add_argument("--steps", type=int, default=60, help="GFPO steps (issue 10: at most 60)")
    ap.add_argument("--batch-size", type=int, default=32, help="questions per GFPO step (issue 10: at most 32)")
    ap.add_argument("--estimators", default="sampled,exhaustive")
    ap.add_argument("--train", default="fork-head,full")
    ap.add_argument("--eval-questions", type=int, default=300, help="held-out questions")
    ap.add_argument("--n", type=int, default=2, help="samples per held-out question and token")
    ap.add_argument("--max-new-tokens", type=int, default=12, help="the task's length budget (traces are ~7)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    return ap.parse_args()


def evaluate(model: str, fork: str, out: Path, args: argparse.Namespace) -> list:
    from forkctl.eval import EvalConfig, run_eval
    from forkctl.records import Sample, read_records

    result = run_eval(EvalConfig(model=model, task="synthetic-choice", n=args.n, k=[1], fork=fork, temperature=0.6,
                                 max_new_tokens=args.max_new_tokens, out=str(out), generate_batch_size=128,
                                 seed=args.seed, limit=args.eval_questions, quiet=True))
    return read_records(result.samples_path, Sample)


def accuracy(samples: list) -> float:
    return sum(bool(s.correct) for s in samples) / len(samples)


def fixed_tokens(model: str, num_forks: int, out: Path, args: argparse.Namespace) -> dict[str, list]:
    return {str(f): evaluate(model, f"think{f}", out / f"think{f}", args) for f in range(1, num_forks + 1)}


def oracle(fixed: dict[str, list]) -> float:
    """The best token per question (its accuracy over that token's samples), averaged over questions."""
    per_q: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for fork, samples in fixed.items():
        for s in samples:
            per_q[s.question_id][fork].append(bool(s.correct))
    return sum(max(sum(v) / len(v) for v in q.values()) for q in per_q.values()) / len(per_q)


def prepare(work: Path, args: argparse.Namespace) -> Path:
    """The SSFT checkpoint of the choice task (built once)."""
    from forkctl.ssft import SSFTConfig, run_ssft
    from forkctl.tasks.synthetic import build_choice_model, write_choice_trace_sets

    base, data, ssft = work / "base", work / "train.jsonl", work / "ssft"
    if not (base / "forkctl.json").exists():
        build_choice_model(base, num_forks=2, seed=args.seed)
    if not data.exists():
        write_choice_trace_sets(data, 2000, args.seed)
    if not (ssft / "ssft_summary.json").exists():
        run_ssft(SSFTConfig(model=str(base), trace_sets=str(data), out=str(ssft), matching="bipartite", num_forks=2,
                            lr=1e-3, batch_size=16, max_steps=args.ssft_steps, warmup=0.05, match_prefix_tokens=4,
                            seed=args.seed, logging_steps=50, save_steps=10**9, quiet=True))
    return ssft


def entropy_curve(log_path: Path, every: int = 10) -> list[float]:
    """Mean per-question π entropy at step 1 and every ``every`` steps (from gfpo_log.jsonl)."""
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    return [round(r["pi_entropy"], 3) for r in rows if r["step"] == 1 or r["step"] % every == 0]


def main() -> None:
    args = parse()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    from forkctl.gfpo import GFPOConfig, run_gfpo

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    ssft = prepare(work, args)
    before = fixed_tokens(str(ssft), 2, work / "before", args)
    report: dict = {"args": vars(args), "before": {f: accuracy(s) for f, s in before.items()},
                    "oracle": oracle(before), "runs": {}}
    report["before"]["policy"] = accuracy(evaluate(str(ssft), "policy", work / "before" / "policy", args))
    best = max(v for k, v in report["before"].items() if k != "policy")
    print(f"before GFPO: {json.dumps(report['before'])}  oracle {report['oracle']:.3f}", flush=True)

    for train in args.train.split(","):
        for estimator in args.estimators.split(","):
            name = f"{estimator}, {train}"
            run = work / f"{estimator}-{train}"
            t0 = time.time()
            if not (run / "train" / "gfpo_state.pt").exists():
                run_gfpo(GFPOConfig(model=str(ssft), task="synthetic-choice-train", out=str(run / "train"),
                                    estimator=estimator, train=train, steps=args.steps, batch_size=args.batch_size,
                                    max_new_tokens=args.max_new_tokens, seed=args.seed, generate_batch_size=128,
                                    quiet=True, overwrite=True))
            seconds = time.time() - t0
            ckpt = str(run / "train")
            policy = accuracy(evaluate(ckpt, "policy", run / "policy", args))
            fixed = {f: accuracy(s) for f, s in fixed_tokens(ckpt, 2, run, args).items()}
            gain = (policy - best) / max(1e-9, report["oracle"] - best)
            report["runs"][name] = {"policy": policy, "fixed": fixed, "gain_fraction": gain,
                                    "fixed_drift": max(abs(fixed[f] - report["before"][f]) for f in fixed),
                                    "pi_entropy": entropy_curve(run / "train" / "gfpo_log.jsonl"),
                                    "train_seconds": round(seconds, 1)}
            print(name, json.dumps(report["runs"][name]), flush=True)
            (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")

    print(f"\n{'run':<24}{'policy':>8}{'<think1>':>10}{'<think2>':>10}{'drift':>7}{'gain':>7}   π entropy (step 1, 10, 20, ...)")
    b = report["before"]
    print(f"{'SSFT, before GFPO':<24}{100 * b['policy']:8.1f}{100 * b['1']:10.1f}{100 * b['2']:10.1f}")
    print(f"{'per-question oracle':<24}{100 * report['oracle']:8.1f}")
    checks = []
    for name, r in report["runs"].items():
        print(f"{name:<24}{100 * r['policy']:8.1f}{100 * r['fixed']['1']:10.1f}{100 * r['fixed']['2']:10.1f}"
              f"{100 * r['fixed_drift']:7.1f}{r['gain_fraction']:7.2f}   {r['pi_entropy']}")
        need = 0.8 if name.endswith("fork-head") else 0.4
        checks.append((f"{name}: gain ≥ {need} of (oracle − best fixed)", r["gain_fraction"] >= need))
        checks.append((f"{name}: fixed tokens within 2 points", r["fixed_drift"] <= 0.02))
    checks.append(("oracle − best fixed ≥ 25 points", report["oracle"] - best >= 0.25))
    for text, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {text}")
    report["checks"] = {t: ok for t, ok in checks}
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nreport: {work / 'report.json'}")


if __name__ == "__main__":
    main()

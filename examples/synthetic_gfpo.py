"""GFPO on the synthetic multi-strategy task: does the model learn which forking token suits which question?

    python examples/synthetic_gfpo.py --ssft runs/synthetic_ssft/bipartite

Starting from an SSFT checkpoint of the synthetic task (examples/synthetic_ssft.py), for each estimator
(sampled, exhaustive) and each ``--train`` choice (fork-head, full), it runs ``forkctl gfpo`` on training
questions (``synthetic-train``) and reports on held-out questions: pass@1 with the model-chosen token (``--fork policy``), pass@1 with each fixed
token before and after, and which token the model chooses by question length. Under the length budget
(``--max-new-tokens``) the long, easy strategy overruns on long questions, so the best token depends on the
question. Results go to ``--out``/report.json and a table.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import torch

from forkctl.eval import EvalConfig, run_eval
from forkctl.forks import ForkFormat
from forkctl.gfpo import GFPOConfig, run_gfpo
from forkctl.records import Sample, read_records


def evaluate(model: str, fork: str, out: Path, args: argparse.Namespace) -> dict:
    cfg = EvalConfig(model=model, task="synthetic", n=args.n, k=[1], fork=fork, temperature=args.temperature,
                     max_new_tokens=args.max_new_tokens, out=str(out), generate_batch_size=128, seed=args.seed,
                     limit=args.eval_questions)
    result = run_eval(cfg)
    samples = read_records(out / "samples.jsonl", Sample)
    return {"pass@1": result.metrics["pass@1"], "samples": samples}


def fixed_token_pass1(model: str, num_forks: int, out: Path, args: argparse.Namespace) -> dict[str, float]:
    return {str(f): evaluate(model, f"think{f}", out / f"think{f}", args)["pass@1"] for f in range(1, num_forks + 1)}


def choice_by_length(samples: list[Sample]) -> dict[str, dict[str, float]]:
    """Share of each chosen token per question length (number of items)."""
    table: dict[int, Counter] = defaultdict(Counter)
    for s in samples:
        table[int(s.extra["num_items"])][str(s.fork)] += 1
    return {str(n): {f: c / sum(cnt.values()) for f, c in sorted(cnt.items())} for n, cnt in sorted(table.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ssft", required=True, help="SSFT checkpoint of the synthetic task")
    ap.add_argument("--out", default="runs/synthetic-gfpo")
    ap.add_argument("--max-new-tokens", type=int, default=20, help="the length budget, for rollouts and eval")
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--n", type=int, default=2, help="eval samples per held-out question")
    ap.add_argument("--eval-questions", type=int, default=300)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--estimators", default="sampled,exhaustive")
    ap.add_argument("--train", default="fork-head,full")
    ap.add_argument("--lr-full", type=float, default=3e-5)
    ap.add_argument("--lr-head", type=float, default=None,
                    help="fork-head SGD step cap (default: gfpo's own; 0.01 was Adam's before issue 10)")
    ap.add_argument("--scale-rewards", action="store_true", help="standardise advantages per question")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    num_forks = ForkFormat.load(args.ssft).num_forks

    report: dict = {"args": vars(args), "before": {}, "runs": {}}
    report["before"]["fixed"] = fixed_token_pass1(args.ssft, num_forks, out / "before", args)
    before_policy = evaluate(args.ssft, "policy", out / "before" / "policy", args)
    report["before"]["policy"] = before_policy["pass@1"]
    report["before"]["choice_by_length"] = choice_by_length(before_policy["samples"])
    print("before GFPO:", json.dumps({k: v for k, v in report["before"].items() if k != "choice_by_length"}))

    for estimator in args.estimators.split(","):
        for train in args.train.split(","):
            name = f"{estimator}-{train}"
            run_dir = out / name
            lr = args.lr_head if train == "fork-head" else args.lr_full
            run_gfpo(GFPOConfig(model=args.ssft, task="synthetic-train", out=str(run_dir / "train"),
                                estimator=estimator, train=train, steps=args.steps, batch_size=args.batch_size,
                                group_size=args.group_size, lr=lr, max_new_tokens=args.max_new_tokens,
                                temperature=args.temperature, seed=args.seed, generate_batch_size=128,
                                scale_rewards=args.scale_rewards))
            ckpt = str(run_dir / "train")  # gfpo's model is its --out, like ssft's
            policy = evaluate(ckpt, "policy", run_dir / "policy", args)
            fixed = fixed_token_pass1(ckpt, num_forks, run_dir, args)
            row = {"policy": policy["pass@1"], "fixed": fixed, "choice_by_length": choice_by_length(policy["samples"]),
                   "fixed_mean": sum(fixed.values()) / len(fixed), "fixed_best": max(fixed.values()),
                   "fixed_drift": {f: fixed[f] - report["before"]["fixed"][f] for f in fixed}}
            row["policy_minus_mean"] = row["policy"] - row["fixed_mean"]
            row["policy_minus_best"] = row["policy"] - row["fixed_best"]
            report["runs"][name] = row
            print(name, json.dumps({k: v for k, v in row.items() if k != "choice_by_length"}))
            (out / "report.json").write_text(json.dumps(report, indent=2))

    print(f"\n{'run':<22}{'policy':>8}{'fixed mean':>12}{'best fixed':>12}{'max drift':>11}")
    b = report["before"]
    print(f"{'before (SSFT)':<22}{100 * b['policy']:8.1f}{100 * sum(b['fixed'].values()) / num_forks:12.1f}"
          f"{100 * max(b['fixed'].values()):12.1f}{'':>11}")
    for name, row in report["runs"].items():
        drift = max(abs(v) for v in row["fixed_drift"].values())
        print(f"{name:<22}{100 * row['policy']:8.1f}{100 * row['fixed_mean']:12.1f}{100 * row['fixed_best']:12.1f}"
              f"{100 * drift:11.1f}")
    print(f"\nreport: {out / 'report.json'}")


if __name__ == "__main__":
    main()

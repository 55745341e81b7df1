"""SSFT step cost against plain SFT on the same traces, model and batch, measured in one run, printed as ratios.

An SSFT step = the no-grad cost pass (N*M prefixes of L tokens) + the assignment + the training step on the M
matched (prompt, trace) pairs. The plain-SFT step is the same Trainer's training step with the assignment fixed
(``matching=fixed``: no cost pass), so the difference is exactly what matching adds. Default setting: traces much
longer than L (as in the paper: L = 1000 against traces of 10k-30k tokens; here L = 32 against 1024).

Time: steps of the two kinds alternate (so load from other processes hits both alike); the median per kind.
Peak memory: on a GPU, ``torch.cuda.max_memory_allocated`` per kind; on CPU, each kind runs in a child process
that reports its peak resident memory during the steps minus its resident memory before them (model, data and
optimiser state are allocated before; the first step's optimiser state is part of both).

    python benchmarks/bench_ssft.py                 # defaults: N=M=4, trace 1024 tokens, L=32
    python benchmarks/bench_ssft.py --trace-tokens 4096 --prefix-tokens 128 --hidden-size 256

Targets (issue 3): time <= 1.15x, memory <= 1.2x at the default setting.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num-forks", type=int, default=4, help="N forking tokens")
    ap.add_argument("--traces", type=int, default=4, help="M traces per question")
    ap.add_argument("--questions", type=int, default=1, help="questions per step (micro-batch)")
    ap.add_argument("--trace-tokens", type=int, default=1024, help="tokens per trace")
    ap.add_argument("--prompt-tokens", type=int, default=24, help="approximate tokens per question")
    ap.add_argument("--prefix-tokens", type=int, default=32, help="L, --match-prefix-tokens")
    ap.add_argument("--hidden-size", type=int, default=128)
    ap.add_argument("--num-layers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8, help="measured steps per kind (after 2 warm-up steps)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    ap.add_argument("--child", choices=["fixed", "bipartite"], help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    return ap.parse_args()


def setup(args: argparse.Namespace, model_dir: Path):
    """The model, one SFT and one SSFT trainer sharing it, and the batch (random ids of exact lengths)."""
    import random

    import torch
    from transformers import TrainingArguments

    from forkctl.matching import QuestionItem
    from forkctl.ssft import SSFTConfig, SSFTTrainer, prepare_model, prompt_ids

    torch.set_num_threads(args.threads)
    model, tok, fmt, fork_ids = prepare_model(SSFTConfig(model=str(model_dir), trace_sets="unused"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    rng = random.Random(0)
    vocab = [i for i in range(len(tok)) if i not in set(fork_ids) and i not in tok.all_special_ids]
    items = []
    for q in range(args.questions):
        words = ["add", "two", "numbers", "then", "find", "x"]
        problem = " ".join(rng.choice(words) for _ in range(args.prompt_tokens // 2))
        prompt, pos = prompt_ids(tok, problem, fmt, fork_ids)
        traces = [[rng.choice(vocab) for _ in range(args.trace_tokens - 1)] + [tok.eos_token_id]
                  for _ in range(args.traces)]
        items.append(QuestionItem(f"q{q}", prompt, pos, traces, [f"t{j}" for j in range(args.traces)]))
    out = Path(tempfile.mkdtemp(prefix="bench_ssft_"))
    targs = TrainingArguments(output_dir=str(out), max_steps=10, report_to=[], learning_rate=1e-4,
                              per_device_train_batch_size=args.questions, remove_unused_columns=False,
                              disable_tqdm=True, dataloader_pin_memory=False)
    trainers = {kind: SSFTTrainer(model=model, args=targs, train_dataset=items, processing_class=tok,
                                  fork_ids=fork_ids, matching=kind, match_prefix_tokens=args.prefix_tokens)
                for kind in ("fixed", "bipartite")}
    for t in trainers.values():
        t.current_gradient_accumulation_steps = 1  # set by Trainer.train(); we drive training_step ourselves
    trainers["fixed"].create_optimizer_and_scheduler(num_training_steps=100)
    opt = trainers["fixed"].optimizer
    return model, trainers, opt, {"questions": items}, device


def step(model, trainer, opt, batch) -> None:  # noqa: ANN001
    trainer.training_step(model, batch)
    opt.step()
    opt.zero_grad(set_to_none=True)


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(args: argparse.Namespace) -> None:
    model, trainers, opt, batch, device = setup(args, Path(args.model_dir))
    before = rss_mb()
    for _ in range(2):
        step(model, trainers[args.child], opt, batch)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"peak_delta_mb": peak - before, "rss_before_mb": before, "peak_mb": peak}))


def main() -> None:
    args = parse()
    if args.child:
        child(args)
        return
    from forkctl.toy import build_toy_model

    model_dir = build_toy_model(Path(tempfile.mkdtemp(prefix="bench_ssft_model_")) / "m", num_forks=args.num_forks,
                                hidden_size=args.hidden_size, num_layers=args.num_layers,
                                max_positions=args.trace_tokens + 256)
    import torch

    model, trainers, opt, batch, device = setup(args, model_dir)
    times: dict[str, list[float]] = {"fixed": [], "bipartite": []}
    mem: dict[str, float] = {}
    for i in range(args.steps + 2):
        for kind in (("fixed", "bipartite") if i % 2 == 0 else ("bipartite", "fixed")):
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            step(model, trainers[kind], opt, batch)
            if device == "cuda":
                torch.cuda.synchronize()
                mem[kind] = max(mem.get(kind, 0.0), torch.cuda.max_memory_allocated() / 2**20)
            if i >= 2:
                times[kind].append(time.perf_counter() - t0)
    if device != "cuda":
        for kind in ("fixed", "bipartite"):
            cmd = [sys.executable, __file__, "--child", kind, "--model-dir", str(model_dir)] + \
                  [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                   if k not in {"child", "model_dir"}]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            mem[kind] = json.loads(res.stdout.strip().splitlines()[-1])["peak_delta_mb"]
    sft, ssft = statistics.median(times["fixed"]), statistics.median(times["bipartite"])
    params = sum(p.numel() for p in model.parameters())
    print(f"setting: N={args.num_forks} forking tokens, M={args.traces} traces of {args.trace_tokens} tokens, "
          f"L={args.prefix_tokens}, {args.questions} question(s)/step, model {params / 1e6:.2f} M params, "
          f"device {device}, {args.threads} thread(s), {args.steps} steps per kind")
    print(f"step time   plain SFT {sft * 1000:8.1f} ms   SSFT {ssft * 1000:8.1f} ms   ratio {ssft / sft:.3f}x "
          f"(target <= 1.15x)")
    unit = "peak allocated" if device == "cuda" else "peak RSS over pre-step RSS"
    print(f"memory      plain SFT {mem['fixed']:8.1f} MB   SSFT {mem['bipartite']:8.1f} MB   ratio "
          f"{mem['bipartite'] / max(mem['fixed'], 1e-9):.3f}x (target <= 1.2x; {unit})")


if __name__ == "__main__":
    main()

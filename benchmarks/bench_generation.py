"""transformers-backend throughput (samples/s) against a per-sample ``generate`` loop, in one run.

    python benchmarks/bench_generation.py [--questions 8] [--n 8] [--max-new-tokens 64] [--batch-size 32]

Both sides use the same model (by default the tiny Qwen2 of the tests and the quick start), prompts (AIME 2024
problems rendered with forking tokens, or synthetic ones when the data folder is absent), sampling settings and
token budget; the ratio is what batching buys. Goal: >= 4x on a 2-core CPU. On a CPU the gain shrinks as the model
grows and the batch becomes compute-bound (hidden 256 / 4 layers: ~4x); on a GPU it grows.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from forkctl import forks
from forkctl.generation import Request, SamplingConfig
from forkctl.generation.hf import TransformersBackend, end_token_ids
from forkctl.models import load_for_generation
from forkctl.toy import build_toy_model


def problems(count: int) -> list[str]:
    data = Path(os.environ.get("FORKCTL_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
    path = data / "aime24.jsonl"
    if path.exists():
        return [json.loads(line)["problem"][:400] for line in path.read_text().splitlines()[:count]]
    return [f"Compute the sum of the first {i + 5} odd numbers." for i in range(count)]


def per_sample_loop(model, tokenizer, prompts: list[str], n: int, sampling: SamplingConfig) -> int:
    """The baseline: one ``generate`` call per sample, no batching."""
    ends = end_token_ids(tokenizer, model)
    tokens = 0
    for prompt in prompts:
        ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
        for _ in range(n):
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                     temperature=sampling.temperature, top_p=sampling.top_p,
                                     max_new_tokens=sampling.max_new_tokens, eos_token_id=ends,
                                     pad_token_id=tokenizer.pad_token_id)
            tokens += out.shape[1] - ids.shape[1]
    return tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--hidden-size", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_toy_model(Path(tmp) / "m", num_forks=4, hidden_size=args.hidden_size, num_layers=args.layers,
                               num_heads=args.hidden_size // 32, num_kv_heads=2, intermediate_size=args.hidden_size * 2)
        model, tokenizer = load_for_generation(str(path))
        fmt = forks.resolve_fork_format(path, tokenizer)
        prompts = [forks.render_prompt(tokenizer, p, 1, fmt) for p in problems(args.questions)]
        sampling = SamplingConfig(temperature=0.8, top_p=0.95, max_new_tokens=args.max_new_tokens)
        backend = TransformersBackend(str(path), batch_size=args.batch_size, model_obj=model, tokenizer=tokenizer)
        backend.generate([Request(prompts[0], n=2)], sampling)  # warm-up

        start = time.perf_counter()
        outs = backend.generate([Request(p, n=args.n, seed=i) for i, p in enumerate(prompts)], sampling)
        batched_s = time.perf_counter() - start
        batched_tokens = sum(c.num_tokens for cs in outs for c in cs)

        start = time.perf_counter()
        loop_tokens = per_sample_loop(model, tokenizer, prompts, args.n, sampling)
        loop_s = time.perf_counter() - start

    samples = args.questions * args.n
    print(f"model: Qwen2 hidden={args.hidden_size} layers={args.layers}; {args.questions} prompts x n={args.n}, "
          f"max_new_tokens={args.max_new_tokens}, threads={args.threads}")
    print(f"per-sample generate loop : {samples / loop_s:8.2f} samples/s  ({loop_tokens / loop_s:8.1f} tokens/s)")
    print(f"forkctl transformers     : {samples / batched_s:8.2f} samples/s  ({batched_tokens / batched_s:8.1f} tokens/s)")
    print(f"ratio (forkctl / loop)   : {loop_s / batched_s:8.2f}x  (goal >= 4x)")


if __name__ == "__main__":
    main()

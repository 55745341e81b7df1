"""``forkctl collect`` requests/s against a bare ``AsyncOpenAI`` loop, same server and concurrency, in one run.

    python benchmarks/bench_collect.py [--requests 2000] [--concurrency 32] [--delay 0.01] [--rounds 3]

The server is the tests' OpenAI-compatible fault server (no faults: ``ignore-n`` plus ``delay:S`` of simulated
generation time) in its own process on 127.0.0.1. The baseline sends the same chat requests with the same
concurrency and does nothing with the replies; ``collect`` also extracts answers, appends each record to JSONL,
keeps per-teacher stats and draws its progress bar. Rounds alternate baseline/collect and the best of each is
compared. Goal: collect >= 0.95x the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from forkctl.collect import CollectConfig, run_collect  # noqa: E402
from forkctl.tasks.math import MATH_PROMPT as DEFAULT_PROMPT  # noqa: E402
from forkctl.testing import free_port, wait_http  # noqa: E402


def start_server() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "fault_server.py"), "--port", str(port)],
                            stdout=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/health", 30, proc)
    return proc, f"http://127.0.0.1:{port}/v1"


def problems(count: int) -> list[str]:
    return [f"Compute {i} times {i + 7}, then add {i % 13}." for i in range(count)]


async def bare_loop(base_url: str, model: str, prompts: list[str], concurrency: int) -> float:
    """The baseline: AsyncOpenAI, a semaphore, gather. Returns requests/s."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=60)
    sem = asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> None:
        async with sem:
            await client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}])

    start = time.perf_counter()
    await asyncio.gather(*(one(DEFAULT_PROMPT.replace("{problem}", p)) for p in prompts))
    elapsed = time.perf_counter() - start
    await client.close()
    return len(prompts) / elapsed


def collect_once(base_url: str, model: str, prompts: list[str], concurrency: int, work: Path, tag: str) -> float:
    questions = work / "questions.jsonl"
    questions.write_text("".join(json.dumps({"id": f"q{i}", "problem": p}) + "\n" for i, p in enumerate(prompts)))
    teachers = work / "teachers.yaml"
    teachers.write_text(yaml.safe_dump({"teachers": [{"name": "t", "base_url": base_url, "model": model}]}))
    cfg = CollectConfig(task=str(questions), teachers=str(teachers), out=str(work / f"traces-{tag}.jsonl"),
                        concurrency=concurrency)
    start = time.perf_counter()
    result = run_collect(cfg)
    elapsed = time.perf_counter() - start
    assert result.stats["t"].ok == len(prompts), result.stats["t"]
    return len(prompts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.01, help="simulated generation time per request (s)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    model = f"ignore-n+delay:{args.delay}"
    prompts = problems(args.requests)
    proc, base_url = start_server()
    bare, coll = [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(bare_loop(base_url, model, prompts[:50], args.concurrency))  # warm-up
            for r in range(args.rounds):
                bare.append(asyncio.run(bare_loop(base_url, model, prompts, args.concurrency)))
                coll.append(collect_once(base_url, model, prompts, args.concurrency, Path(tmp), str(r)))
                print(f"round {r + 1}: bare {bare[-1]:.1f} req/s, collect {coll[-1]:.1f} req/s", flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"requests={args.requests} concurrency={args.concurrency} delay={args.delay}s")
    print(f"bare AsyncOpenAI loop: {max(bare):.1f} req/s")
    print(f"forkctl collect:       {max(coll):.1f} req/s")
    print(f"ratio collect/bare:    {max(coll) / max(bare):.3f}x (goal >= 0.95x)")


if __name__ == "__main__":
    main()

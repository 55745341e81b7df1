"""Helpers for tests and benchmarks: free ports, starting real local servers, capping threads, small question files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def write_arithmetic_questions(path: Path, count: int) -> Path:
    """``count`` questions ``What is i + i?`` with gold answers ``2i`` (ids q0, q1, ...), as questions JSONL."""
    path.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
                            for i in range(count)))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def capped_env(threads: int = 1, **extra: str) -> dict[str, str]:
    """The current environment with BLAS/OpenMP threads capped (two torch processes on 2 cores otherwise
    oversubscribe and run ~10x slower)."""
    env = dict(os.environ)
    env.update({v: str(threads) for v in THREAD_VARS})
    env.update({"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    env.update(extra)
    return env


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s")


class TransformersServer:
    """``transformers serve`` on 127.0.0.1 with a forced local model: a real OpenAI-compatible server."""

    def __init__(self, model_dir: str | Path, log_path: str | Path, threads: int = 1) -> None:
        self.model_dir, self.port = str(model_dir), free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        exe = Path(sys.executable).with_name("transformers")
        cmd = [str(exe) if exe.exists() else "transformers", "serve", self.model_dir, "--host", "127.0.0.1",
               "--port", str(self.port), "--device", "cpu", "--dtype", "float32"]
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=capped_env(threads))

    def start(self, timeout_s: float = 180) -> TransformersServer:
        try:
            wait_http(f"http://127.0.0.1:{self.port}/health", timeout_s, self.proc)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()

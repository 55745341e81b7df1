"""The one interface every generation backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass
class SamplingConfig:
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 1024
    seed: int = 0


@dataclass
class Request:
    """Generate ``n`` completions of ``prompt`` (already rendered: chat template + forking token)."""

    prompt: str
    n: int = 1
    seed: int = 0


@dataclass
class Completion:
    text: str
    num_tokens: int
    finish_reason: str  # "stop" (end of sequence or stop string) or "length" (hit max_new_tokens)
    prompt_tokens: int = 0
    token_ids: list[int] | None = None  # generated ids where the backend sees them (transformers, vllm)


class Backend(ABC):
    """Generates completions for rendered prompts. ``tokenizer`` is the one prompts are rendered with."""

    name: str = "base"
    tokenizer: Any

    @abstractmethod
    def generate(self, requests: list[Request], sampling: SamplingConfig,
                 keep_special_tokens: bool = False) -> list[list[Completion]]:
        """Return, per request, exactly ``request.n`` completions."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release servers, pools or GPU memory."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

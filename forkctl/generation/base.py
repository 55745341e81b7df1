"""The one interface every generation backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SamplingConfig:
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 1024
    seed: int = 0
    # Token ids never to generate: the forking tokens are control tokens valid only at the fork position.
    suppress_token_ids: list[int] = field(default_factory=list)


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
    def generate(self, requests: list[Request], sampling: SamplingConfig) -> list[list[Completion]]:
        """Return, per request, exactly ``request.n`` completions."""

    @abstractmethod
    def fork_logprobs(self, prompts: list[str], fork_ids: list[int]) -> list[list[float]]:
        """log π(token | prompt) restricted to ``fork_ids`` (renormalised), for each prompt: the model's choice of
        forking token at the end of the prompt."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release servers, pools or GPU memory."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

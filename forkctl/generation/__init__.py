"""Generation backends behind one interface: transformers, vllm (offline engine), openai (any compatible server)."""

from __future__ import annotations

from typing import Any

from forkctl.generation.base import Backend, Completion, Request, SamplingConfig

BACKENDS = ("transformers", "vllm", "openai")


def load_backend(name: str, model: str, **options: Any) -> Backend:
    """Build a backend by name with its own options (``BackendOptions.backend_options()`` gives exactly those)."""
    if name == "transformers":
        from forkctl.generation.hf import TransformersBackend

        return TransformersBackend(model, **options)
    if name == "vllm":
        from forkctl.generation.vllm_backend import VLLMBackend

        return VLLMBackend(model, **options)
    if name == "openai":
        from forkctl.generation.openai_backend import OpenAIBackend

        return OpenAIBackend(model, **options)
    raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "Completion", "Request", "SamplingConfig", "load_backend"]

"""Generation backends behind one interface: transformers, vllm (offline engine), openai (any compatible server)."""

from __future__ import annotations

from typing import Any

from forkctl.generation.base import Backend, Completion, Request, SamplingConfig

BACKENDS = ("transformers", "vllm", "openai")


def load_backend(name: str, model: str, **options: Any) -> Backend:
    """Build a backend by name; options not meant for it are ignored (None values are dropped)."""
    opts = {k: v for k, v in options.items() if v is not None}
    if name == "transformers":
        from forkctl.generation.hf import TransformersBackend

        return TransformersBackend(model, batch_size=opts.get("batch_size", 32), dtype=opts.get("dtype", "auto"))
    if name == "vllm":
        from forkctl.generation.vllm_backend import VLLMBackend

        return VLLMBackend(model, dtype=opts.get("dtype", "auto"), engine_args=opts.get("vllm_args"))
    if name == "openai":
        from forkctl.generation.openai_backend import OpenAIBackend

        if "base_url" not in opts:
            raise ValueError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        return OpenAIBackend(model, base_url=opts["base_url"], tokenizer=opts.get("tokenizer"),
                             api_key_env=opts.get("api_key_env"), concurrency=opts.get("concurrency", 16),
                             extra_body=opts.get("extra_body"))
    raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Backend", "Completion", "Request", "SamplingConfig", "load_backend"]

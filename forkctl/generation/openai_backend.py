"""OpenAI-compatible backend: any server with ``/v1/completions`` (vLLM, SGLang, transformers serve, a provider).

Prompts are rendered locally (chat template + forking token) and sent as raw text, so the server's own chat
formatting cannot differ from training. Servers that ignore ``n`` are topped up with further requests until each
prompt has its ``n`` completions. Retries (429, 5xx, timeouts; honouring Retry-After) are the ``openai`` client's.
"""

from __future__ import annotations

from forkctl.errors import UserError
import asyncio
import os
from typing import Any

from forkctl.generation.base import Backend, Completion, Request, SamplingConfig


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, model: str, base_url: str, tokenizer: str | None = None, api_key_env: str | None = None,
                 concurrency: int = 16, timeout_s: float = 600.0, max_retries: int = 5,
                 extra_body: dict[str, Any] | None = None) -> None:
        from transformers import AutoTokenizer

        self.model, self.base_url = model, base_url
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or model)
        self.api_key = os.environ.get(api_key_env, "") if api_key_env else os.environ.get("OPENAI_API_KEY", "EMPTY")
        self.concurrency, self.timeout_s, self.max_retries = concurrency, timeout_s, max_retries
        self.extra_body = extra_body or {}

    def generate(self, requests: list[Request], sampling: SamplingConfig) -> list[list[Completion]]:
        return asyncio.run(self._generate_all(requests, sampling))

    async def _generate_all(self, requests: list[Request], sampling: SamplingConfig) -> list[list[Completion]]:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=self.base_url, api_key=self.api_key or "EMPTY", timeout=self.timeout_s,
                             max_retries=self.max_retries)
        sem = asyncio.Semaphore(self.concurrency)
        try:
            return list(await asyncio.gather(*(self._one(client, sem, r, sampling)
                                               for r in requests)))
        finally:
            await client.close()

    def fork_logprobs(self, prompts: list[str], fork_ids: list[int]) -> list[list[float]]:
        return asyncio.run(self._fork_logprobs_all(prompts, fork_ids))

    async def _fork_logprobs_all(self, prompts: list[str], fork_ids: list[int]) -> list[list[float]]:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=self.base_url, api_key=self.api_key or "EMPTY", timeout=self.timeout_s,
                             max_retries=self.max_retries)
        sem = asyncio.Semaphore(self.concurrency)
        try:
            return list(await asyncio.gather(*(self._fork_logprobs_one(client, sem, p, fork_ids) for p in prompts)))
        finally:
            await client.close()

    async def _fork_logprobs_one(self, client: Any, sem: asyncio.Semaphore, prompt: str,
                                 fork_ids: list[int]) -> list[float]:
        """π over the forking tokens: the prompt followed by each forking token, sent as token ids with
        ``echo`` + ``logprobs`` so the server scores that token at the fork position (its raw log-probability),
        renormalised over the N. (Sampling one token with ``allowed_token_ids`` returns top-k log-probabilities
        of the whole vocabulary on vLLM, where the forking tokens are mostly absent.)"""
        import math

        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]

        async def score(fork: int) -> float | None:
            async with sem:
                resp = await client.completions.create(model=self.model, prompt=[*ids, fork], max_tokens=1,
                                                       temperature=1.0, echo=True, logprobs=0,
                                                       extra_body=self.extra_body or None)
            lp = resp.choices[0].logprobs
            values = lp.token_logprobs if lp is not None else None
            return values[len(ids)] if values is not None and len(values) > len(ids) else None

        raw = await asyncio.gather(*(score(f) for f in fork_ids))
        if any(x is None for x in raw):
            raise UserError(f"{self.base_url} returned no prompt log-probabilities (echo + logprobs); --fork policy "
                            f"with --backend openai needs a server that scores prompt tokens (vLLM, SGLang)")
        top = max(raw)  # type: ignore[type-var]
        norm = top + math.log(sum(math.exp(x - top) for x in raw))  # type: ignore[operator]
        return [x - norm for x in raw]  # type: ignore[operator]

    async def _one(self, client: Any, sem: asyncio.Semaphore, req: Request,
                   sampling: SamplingConfig) -> list[Completion]:
        got: list[Completion] = []
        attempt = 0
        while len(got) < req.n:
            want = req.n - len(got)
            body = dict(self.extra_body)
            if sampling.suppress_token_ids:
                body["logit_bias"] = {str(i): -100 for i in sampling.suppress_token_ids}
            async with sem:
                resp = await client.completions.create(
                    model=self.model, prompt=req.prompt, n=want, temperature=sampling.temperature,
                    top_p=sampling.top_p, max_tokens=sampling.max_new_tokens, seed=req.seed + attempt,
                    extra_body=body or None)
            attempt += 1
            if not resp.choices:
                raise UserError(f"{self.base_url} returned no choices")
            usage_tokens = resp.usage.completion_tokens if resp.usage and len(resp.choices) == 1 else None
            prompt_tokens = resp.usage.prompt_tokens if resp.usage else 0
            for choice in resp.choices[:want]:
                text = choice.text or ""
                n_tok = usage_tokens if usage_tokens is not None else \
                    len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + (choice.finish_reason == "stop")
                got.append(Completion(text=text, num_tokens=n_tok,
                                      finish_reason="length" if choice.finish_reason == "length" else "stop",
                                      prompt_tokens=prompt_tokens))
        return got

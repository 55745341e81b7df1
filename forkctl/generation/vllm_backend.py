"""vLLM backend: the offline ``vllm.LLM`` engine (tensor/data parallel through its own options).

vLLM is an optional extra (``pip install 'forkctl[vllm]'``), imported only when this backend is chosen.
Prompts are passed as token ids from :mod:`forkctl.forks` rendering, so vLLM sees exactly what training saw.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

from forkctl.errors import UserError

from forkctl.generation.base import Backend, Completion, Request, SamplingConfig


class VLLMBackend(Backend):
    name = "vllm"

    def __init__(self, model: str, dtype: str = "auto", engine_args: dict[str, Any] | None = None,
                 in_process: bool = False) -> None:
        """``in_process``: run the engine core in this process (as TRL's colocate mode does), so that
        :meth:`load_weights` can reach the model without pickling code to an engine process."""
        if in_process:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        try:
            from vllm import LLM
        except ImportError as exc:
            raise UserError("the vllm backend needs vLLM: pip install 'forkctl[vllm]' "
                            f"(or use --backend transformers / openai) ({exc})") from None
        args = {"dtype": dtype, "seed": 0, **(engine_args or {})}
        try:
            self.llm = LLM(model=model, **args)
        except Exception as exc:  # noqa: BLE001 - an engine that cannot start is the user's setting to fix
            raise UserError(f"vLLM could not start an engine for {model}: {type(exc).__name__}: "
                            f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''} (on the CPU build: "
                            f"VLLM_CPU_KVCACHE_SPACE=1 and --vllm-args '{{\"max_model_len\": 1024, "
                            f"\"max_num_seqs\": 16}}'; FORKCTL_DEBUG=1 shows the traceback)") from exc
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, requests: list[Request], sampling: SamplingConfig) -> list[list[Completion]]:
        from vllm import SamplingParams

        prompts = [{"prompt_token_ids": self.tokenizer(r.prompt, add_special_tokens=False)["input_ids"]}
                   for r in requests]
        params = [SamplingParams(n=r.n, temperature=sampling.temperature, top_p=sampling.top_p,
                                 max_tokens=sampling.max_new_tokens, seed=r.seed,
                                 logit_bias={i: -100.0 for i in sampling.suppress_token_ids} or None,
                                 ) for r in requests]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [[Completion(text=o.text, num_tokens=len(o.token_ids),
                            finish_reason="length" if o.finish_reason == "length" else "stop",
                            prompt_tokens=len(out.prompt_token_ids or []), token_ids=_strip_end(o, self.tokenizer))
                 for o in out.outputs] for out in outputs]


    def load_weights(self, weights: Iterable[tuple[str, Any]]) -> None:
        """Copy updated weights (transformers names, e.g. a learner's ``state_dict()``) into the engine's model,
        then drop cached prefixes computed with the old ones: the next ``generate`` samples from the new weights.

        vLLM ≥ 0.17's worker ``reload_weights`` maps the names (stacked qkv / gate-up projections), casts to the
        engine's dtype and redoes what loading does after the weights (the CPU build repacks linear layers, so
        calling the model's ``load_weights`` directly fails there); older vLLMs get the model's own
        ``load_weights``, as TRL's colocate mode calls it."""
        batch = [(name, tensor.detach()) for name, tensor in weights]
        try:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": iter(batch)})
        except AttributeError:  # an engine without reload_weights
            self.llm.apply_model(lambda model: model.load_weights(iter(batch)))
        self.llm.reset_prefix_cache()

    def fork_logprobs(self, prompts: list[str], fork_ids: list[int]) -> list[list[float]]:
        """π over the forking tokens: each prompt followed by each forking token, scored by ``prompt_logprobs``
        (the model's raw log-probability of that token at the fork position; prefix caching makes the N copies
        cheap), renormalised over the N. Sampling with ``allowed_token_ids`` + ``logprobs`` is not used: vLLM
        reports raw full-vocabulary top-k log-probabilities there, so the N forking tokens are mostly missing."""
        import math

        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0)
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        inputs = [{"prompt_token_ids": [*prompt, f]} for prompt in ids for f in fork_ids]
        results = self.llm.generate(inputs, params, use_tqdm=False)
        out = []
        for q in range(len(prompts)):
            raw = [results[q * len(fork_ids) + k].prompt_logprobs[-1][f].logprob for k, f in enumerate(fork_ids)]
            top = max(raw)
            norm = top + math.log(sum(math.exp(x - top) for x in raw))
            out.append([x - norm for x in raw])
        return out


def _strip_end(output: Any, tokenizer: Any) -> list[int]:
    ids = list(output.token_ids)
    if ids and output.finish_reason == "stop" and ids[-1] == tokenizer.eos_token_id:
        ids = ids[:-1]
    return ids

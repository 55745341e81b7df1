"""transformers backend: batched ``generate`` with a KV cache, on CPU or GPU."""

from __future__ import annotations

from typing import Any

from forkctl.config import derive_seed
from forkctl.generation.base import Backend, Completion, Request, SamplingConfig
from forkctl.models import ensure_pad_token, fork_log_probs, left_pad, load_for_generation


def end_token_ids(tokenizer: Any, model: Any) -> list[int]:
    """Every id that ends a response: the tokenizer's eos, the generation config's, and ``<|im_end|>``."""
    ids: set[int] = set()
    for cand in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(cand, int):
            ids.add(cand)
        elif isinstance(cand, list):
            ids.update(cand)
    im_end = tokenizer.get_vocab().get("<|im_end|>")
    if im_end is not None:
        ids.add(im_end)
    return sorted(ids)


class TransformersBackend(Backend):
    """Expands requests into sequences, sorts them by prompt length and generates them in batches."""

    name = "transformers"

    def __init__(self, model: str, batch_size: int = 32, dtype: str = "auto", device: str | None = None,
                 model_obj: Any = None, tokenizer: Any = None) -> None:
        if model_obj is not None:
            self.model, self.tokenizer = model_obj, tokenizer
        else:
            self.model, self.tokenizer = load_for_generation(model, dtype, device)
        self.batch_size = batch_size
        self.tokenizer.padding_side = "left"
        ensure_pad_token(self.tokenizer)
        self.end_ids = end_token_ids(self.tokenizer, self.model)

    def generate(self, requests: list[Request], sampling: SamplingConfig) -> list[list[Completion]]:
        seqs = [(ri, req) for ri, req in enumerate(requests) for _ in range(req.n)]
        encoded = [self.tokenizer(req.prompt, add_special_tokens=False)["input_ids"] for req in requests]
        order = sorted(range(len(seqs)), key=lambda i: len(encoded[seqs[i][0]]))
        results: list[list[Completion]] = [[] for _ in requests]
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            outs = self._generate_batch([encoded[seqs[i][0]] for i in chunk],
                                        [seqs[i][1] for i in chunk], sampling)
            for i, comp in zip(chunk, outs):
                results[seqs[i][0]].append(comp)
        return results

    def fork_logprobs(self, prompts: list[str], fork_ids: list[int]) -> list[list[float]]:
        import torch

        with torch.no_grad():
            return fork_log_probs(self.model, self.tokenizer, prompts, fork_ids, self.batch_size).tolist()

    def _generate_batch(self, prompts: list[list[int]], reqs: list[Request],
                        sampling: SamplingConfig) -> list[Completion]:
        import torch

        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        input_ids, attention = left_pad(prompts, pad, self.model.device)
        torch.manual_seed(_batch_seed(reqs))
        do_sample = sampling.temperature > 0
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids, attention_mask=attention, max_new_tokens=sampling.max_new_tokens,
                do_sample=do_sample, temperature=sampling.temperature if do_sample else None,
                top_p=sampling.top_p if do_sample else None, top_k=None if do_sample else None,
                eos_token_id=self.end_ids, pad_token_id=pad, suppress_tokens=sampling.suppress_token_ids or None,
            )
        completions = []
        for row, prompt in zip(out[:, width:].tolist(), prompts):
            end = next((i for i, t in enumerate(row) if t in self.end_ids), None)
            ids = row if end is None else row[: end + 1]
            text_ids = ids if end is None else ids[:-1]
            text = self.tokenizer.decode(text_ids, skip_special_tokens=True)
            completions.append(Completion(text=text, num_tokens=len(ids),
                                          finish_reason="length" if end is None else "stop",
                                          prompt_tokens=len(prompt), token_ids=text_ids))
        return completions


def _batch_seed(reqs: list[Request]) -> int:
    """A seed that depends only on what is generated, so a rerun reproduces the same batch."""
    return derive_seed(repr([(r.prompt, r.seed) for r in reqs]))

"""transformers backend: batched ``generate`` with a KV cache, on CPU or GPU."""

from __future__ import annotations

import hashlib
from typing import Any

from forkctl.generation.base import Backend, Completion, Request, SamplingConfig


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


def load_model_and_tokenizer(model_path: str, dtype: str = "auto", device: str | None = None):
    """Load a causal LM and its tokenizer for generation or training (bf16 on GPU, fp32 on CPU by default)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype).to(device)
    model.eval()
    return model, tokenizer


class TransformersBackend(Backend):
    """Expands requests into sequences, sorts them by prompt length and generates them in batches."""

    name = "transformers"

    def __init__(self, model: str, batch_size: int = 32, dtype: str = "auto", device: str | None = None,
                 model_obj: Any = None, tokenizer: Any = None) -> None:
        if model_obj is not None:
            self.model, self.tokenizer = model_obj, tokenizer
        else:
            self.model, self.tokenizer = load_model_and_tokenizer(model, dtype, device)
        self.batch_size = batch_size
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
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
        return fork_logprobs_of(self.model, self.tokenizer, prompts, fork_ids, self.batch_size)

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


def left_pad(ids: list[list[int]], pad: int, device: Any) -> tuple[Any, Any]:
    """(input_ids, attention_mask) with every sequence right-aligned, so the last position is each prompt's end."""
    import torch

    width = max(len(x) for x in ids)
    input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=device)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=device)
    return input_ids, mask


def encode_left_padded(tokenizer: Any, prompts: list[str], device: Any) -> tuple[Any, Any]:
    """Tokenise rendered prompts (no extra special tokens) and left-pad them."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return left_pad([tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts], pad, device)


def fork_logprobs_of(model: Any, tokenizer: Any, prompts: list[str], fork_ids: list[int],
                     batch_size: int = 32) -> list[list[float]]:
    """log-softmax over the forking tokens' logits at the last prompt position (left-padded batches)."""
    import torch

    out: list[list[float]] = []
    for start in range(0, len(prompts), batch_size):
        input_ids, mask = encode_left_padded(tokenizer, prompts[start:start + batch_size], model.device)
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=mask, logits_to_keep=1).logits[:, -1, :]
        out.extend(torch.log_softmax(logits[:, fork_ids].float(), dim=-1).tolist())
    return out


def _batch_seed(reqs: list[Request]) -> int:
    """A seed that depends only on what is generated, so a rerun reproduces the same batch."""
    digest = hashlib.sha256(repr([(r.prompt, r.seed) for r in reqs]).encode()).digest()
    return int.from_bytes(digest[:4], "little")

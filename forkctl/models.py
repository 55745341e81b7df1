"""Loading models and tokenizers: where a model name points, and (see the functions below) one dtype policy.

Heavy imports (torch, transformers) stay inside the functions: ``forkctl --help`` imports this module's callers.
"""

from __future__ import annotations

import contextlib
import re
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Callable, NamedTuple

from forkctl.errors import UserError

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")  # "gpt2" or "org/name"


def looks_local(name: str) -> bool:
    """Whether ``name`` can only mean a local folder: an explicit path, or 'dir/x' where 'dir' exists here
    (``runs/ssft`` when ``runs/`` exists is a folder that is missing, not a Hub repository)."""
    if name.startswith(("/", "./", "../", "~")) or name.endswith("/") or name in (".", ".."):
        return True
    if not _HUB_ID.match(name):
        return name.count("/") > 1 or "\\" in name
    return "/" in name and Path(name.split("/")[0]).is_dir()


def check_model_path(name: str | None, option: str = "--model") -> None:
    """Refuse at once a model that is neither an existing local folder nor a possible Hub id, before any Hub
    call (which would retry for a minute and end in a misleading 'Repo id must be in the form' traceback)."""
    if not name:
        return
    path = Path(name).expanduser()
    if path.exists():
        if path.is_dir() and not (path / "config.json").exists():
            raise UserError(f"{option} {name}: the folder has no config.json, so it is not a model folder")
        return
    if looks_local(name) or not _HUB_ID.match(name):
        raise UserError(f"{option} {name}: no such model folder (and not a Hugging Face Hub id such as "
                        f"Qwen/Qwen2.5-7B-Instruct)")


# --------------------------------------------------------------------------------------------------
# Tokenizers and models: one dtype policy
#
# Generation: ``auto`` = bf16 on a GPU, fp32 on CPU (inference only, so half precision costs nothing).
# Training: fp32 master weights always. AdamW on bf16 weights rounds a 1e-6 step to nothing (bf16 keeps 8 bits
# of mantissa), so bf16 is only ever autocast over fp32 weights, where asked.


def ensure_pad_token(tokenizer: Any) -> Any:
    """Batches are padded: a tokenizer without a pad token pads with its end token (masked out everywhere)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    return ensure_pad_token(AutoTokenizer.from_pretrained(path))


def _load_model(path: str, dtype: Any, device: str | None) -> Any:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return model.to(device) if device is not None else model


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def generation_dtype(dtype: str, device: str) -> Any:
    """``auto``: bf16 on a GPU, fp32 on CPU; otherwise the named torch dtype."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def load_for_generation(path: str, dtype: str = "auto", device: str | None = None) -> tuple[Any, Any]:
    """(model in eval mode on ``device``, tokenizer) for sampling and scoring, never for an optimiser."""
    device = device or default_device()
    model = _load_model(path, generation_dtype(dtype, device), device)
    model.eval()
    return model, load_tokenizer(path)


class Learner(NamedTuple):
    """A model to train: fp32 weights, its tokenizer, and the autocast context its forward passes run in."""

    model: Any
    tokenizer: Any
    autocast: Callable[[], AbstractContextManager[Any]]


def load_for_training(path: str, bf16: bool = False, device: str | None = None) -> Learner:
    """fp32 master weights always; ``bf16``: forward passes under bf16 autocast on the model's device (the
    optimiser still updates fp32 weights, so small steps are not rounded away).

    ``device=None`` leaves the model where transformers puts it (the Trainer / accelerate move it)."""
    import torch

    model = _load_model(path, torch.float32, device)
    return Learner(model, load_tokenizer(path), autocast_for(model_device(model), bf16))


def autocast_for(device: Any, bf16: bool) -> Callable[[], AbstractContextManager[Any]]:
    """A factory of bf16 autocast contexts on ``device`` (a no-op context when ``bf16`` is off)."""
    import torch

    if not bf16:
        return contextlib.nullcontext
    kind = torch.device(device).type
    return lambda: torch.autocast(kind, dtype=torch.bfloat16)


def model_device(model: Any) -> Any:
    """The device of a model's (first) parameter; works through DDP/accelerate wrappers too."""
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - a model without parameters
        return torch.device("cpu")


# --------------------------------------------------------------------------------------------------
# π over the forking tokens: the model's softmax at the fork position, restricted to <think1>..<thinkN>


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


def _chunks(prompts: list[str], batch_size: int) -> list[list[str]]:
    step = batch_size or len(prompts)
    return [prompts[s:s + step] for s in range(0, len(prompts), step)]


def fork_log_probs(model: Any, tokenizer: Any, prompts: list[str], fork_ids: list[int], batch_size: int = 0,
                   autocast: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext) -> Any:
    """(len(prompts), N) log π(<think i> | prompt): the full-vocabulary logits at each prompt's last position,
    restricted to the forking tokens and renormalised. Prompts end where the model chooses its token
    (:func:`forkctl.forks.policy_prompt`). Differentiable unless called under ``no_grad``; ``batch_size`` > 0
    splits the forward passes."""
    import torch

    device, index, parts = model_device(model), list(fork_ids), []
    for chunk in _chunks(prompts, batch_size):
        input_ids, mask = encode_left_padded(tokenizer, chunk, device)
        with autocast():
            logits = model(input_ids=input_ids, attention_mask=mask, logits_to_keep=1).logits[:, -1, :]
        parts.append(torch.log_softmax(logits.float()[:, index], dim=-1))
    return torch.cat(parts)


def fork_hidden_states(model: Any, tokenizer: Any, prompts: list[str]) -> Any:
    """The final (normed) hidden state at each prompt's last position, the fork position: what the output rows of
    the forking tokens multiply (the fork-head policy trains those rows on these frozen features)."""
    input_ids, mask = encode_left_padded(tokenizer, prompts, model_device(model))
    return model.base_model(input_ids=input_ids, attention_mask=mask).last_hidden_state[:, -1, :]


def fork_logits_and_hidden(model: Any, tokenizer: Any, prompts: list[str], fork_ids: list[int],
                           autocast: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
                           ) -> tuple[Any, Any]:
    """((len(prompts), N) fp32 logits of the forking tokens, (len(prompts), d) final normed hidden states) at the
    fork position, from one forward pass through ``model`` itself (so an accelerate/DDP wrapper sees it and
    synchronises gradients). Differentiable unless called under ``no_grad``."""
    input_ids, mask = encode_left_padded(tokenizer, prompts, model_device(model))
    with autocast():
        out = model(input_ids=input_ids, attention_mask=mask, logits_to_keep=1, output_hidden_states=True)
    return out.logits[:, -1, list(fork_ids)].float(), out.hidden_states[-1][:, -1, :].float()

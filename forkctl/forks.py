"""The forking tokens ``<think1>``..``<thinkN>``: adding, initialising, rendering.

:func:`render_prompt` is the one place a question becomes model input. Training (ssft), RL (gfpo) and every
generation backend call it, so the text the model sees after ``<think i>`` is identical everywhere:

    <chat template with add_generation_prompt=True><prefix><think i><suffix>

The reference checkpoints use prefix ``<|im_start|>`` and suffix ``\\n`` on ChatML; both are configurable and
saved next to a checkpoint in ``forkctl.json`` so every later stage renders the same way.
"""

from __future__ import annotations

from forkctl.errors import UserError
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FORK_CONFIG_FILE = "forkctl.json"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def last_complete_checkpoint(out: str | Path, drop_incomplete: bool = False) -> str | None:
    """The newest ``checkpoint-N`` folder that was saved completely: forkctl.json is written into a checkpoint
    after the Trainer has saved everything else, so a folder without it was cut short (a kill during the save).
    ``drop_incomplete`` removes such newer folders (a resume would otherwise trip over them)."""
    import re
    import shutil

    found = []
    for path in Path(out).glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if m and path.is_dir():
            found.append((int(m.group(1)), path))
    best = None
    for step, path in sorted(found, reverse=True):
        if (path / FORK_CONFIG_FILE).exists() and (path / "trainer_state.json").exists():
            best = path
            break
        if drop_incomplete:
            shutil.rmtree(path, ignore_errors=True)
    return str(best) if best else None


def fork_token(index: int) -> str:
    """The text of forking token ``index`` (1-based)."""
    if index < 1:
        raise UserError(f"forking tokens are numbered from 1, got {index}")
    return f"<think{index}>"


def fork_tokens(num_forks: int) -> list[str]:
    return [fork_token(i) for i in range(1, num_forks + 1)]


@dataclass
class ForkFormat:
    """How a forking token is placed after the generation prompt, and how many there are."""

    num_forks: int
    prefix: str = "<|im_start|>"
    suffix: str = "\n"

    def save(self, directory: str | Path) -> None:
        Path(directory, FORK_CONFIG_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> ForkFormat | None:
        path = Path(directory, FORK_CONFIG_FILE)
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(num_forks=int(data["num_forks"]), prefix=data.get("prefix", ""), suffix=data.get("suffix", "\n"))


def default_prefix(tokenizer: Any) -> str:
    """``<|im_start|>`` where the tokenizer knows it (the reference checkpoints' layout), else nothing."""
    return "<|im_start|>" if "<|im_start|>" in tokenizer.get_vocab() else ""


def detect_num_forks(tokenizer: Any) -> int:
    """How many consecutive ``<think1>``.. tokens the tokenizer has (0 if none)."""
    vocab = tokenizer.get_vocab()
    n = 0
    while fork_token(n + 1) in vocab:
        n += 1
    return n


def resolve_fork_format(model_path: str | Path | None, tokenizer: Any, num_forks: int | None = None,
                        prefix: str | None = None, suffix: str | None = None) -> ForkFormat:
    """The fork format to use: explicit options win, then the checkpoint's forkctl.json, then defaults."""
    saved = ForkFormat.load(model_path) if model_path and Path(model_path).is_dir() else None
    n = num_forks if num_forks is not None else (saved.num_forks if saved else detect_num_forks(tokenizer))
    fmt = ForkFormat(
        num_forks=n,
        prefix=prefix if prefix is not None else (saved.prefix if saved else default_prefix(tokenizer)),
        suffix=suffix if suffix is not None else (saved.suffix if saved else "\n"),
    )
    return fmt


def fork_token_ids(tokenizer: Any, num_forks: int) -> list[int]:
    """Token ids of ``<think1>``..``<thinkN>``; each must be a single token of the vocabulary."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in fork_tokens(num_forks) if t not in vocab]
    if missing:
        raise UserError(f"the tokenizer lacks forking tokens {missing[:3]}{'...' if len(missing) > 3 else ''}; "
                         f"add them first (forkctl ssft does, or forks.add_fork_tokens)")
    return [vocab[t] for t in fork_tokens(num_forks)]


FORK_INIT_NOISE = 0.1  # mean-noise: the noise std as a fraction of each dimension's std over existing rows


def add_fork_tokens(tokenizer: Any, model: Any, num_forks: int, init: str = "mean-noise", seed: int = 0) -> list[int]:
    """Add ``<think1>``..``<thinkN>`` as special tokens, resize the model and initialise the new rows.

    ``init``: ``mean-noise`` (default: the mean of the existing rows plus small seeded Gaussian noise, 0.1 of
    each dimension's spread: in-distribution, yet distinct, so the first SSFT cost matrices already differ
    between tokens and the first assignments are not just index order), ``mean`` (all new rows identical), or
    the text of an existing single token to copy (e.g. ``<think>``). Tokens already present keep their rows.
    Returns the token ids.
    """
    import torch

    vocab = tokenizer.get_vocab()
    new = [t for t in fork_tokens(num_forks) if t not in vocab]
    if new:
        tokenizer.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False) \
            if _supports_replace_extra(tokenizer) else \
            tokenizer.add_special_tokens({"additional_special_tokens": new}, replace_additional_special_tokens=False)
    ids = fork_token_ids(tokenizer, num_forks)
    old_rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > old_rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    new_ids = [tokenizer.convert_tokens_to_ids(t) for t in new]
    if not new_ids:
        return ids
    from forkctl.config import derive_seed

    with torch.no_grad():
        for m, emb in enumerate(_embedding_matrices(model)):
            base = emb[: min(old_rows, emb.shape[0])].float()
            if init in ("mean", "mean-noise"):
                row = base.mean(dim=0)
            else:
                src = tokenizer.convert_tokens_to_ids(init)
                if src is None or src == tokenizer.unk_token_id:
                    raise UserError(f"--fork-init {init!r} is not a token of this tokenizer (or use mean-noise, "
                                    f"mean)")
                row = emb[src].float()
            spread = base.std(dim=0) * FORK_INIT_NOISE
            for i in new_ids:
                noise = torch.zeros_like(row)
                if init == "mean-noise":
                    gen = torch.Generator().manual_seed(derive_seed(seed, "fork-init", m, i))
                    noise = torch.randn(row.shape, generator=gen) * spread
                emb[i] = (row + noise).to(emb.dtype)
    return ids


def _supports_replace_extra(tokenizer: Any) -> bool:
    import inspect

    return "replace_extra_special_tokens" in inspect.signature(tokenizer.add_special_tokens).parameters


def _embedding_matrices(model: Any) -> list[Any]:
    """The input embedding matrix and, when untied, the output one."""
    mats = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != mats[0].data_ptr():
        mats.append(out.weight)
    return mats


def ensure_chat_template(tokenizer: Any) -> None:
    """Give a tokenizer without a chat template the ChatML one (what the reference checkpoints use)."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE


def generation_prompt(tokenizer: Any, problem: str, system: str | None = None) -> str:
    """The chat-templated user turn followed by the assistant header, as the tokenizer defines it."""
    ensure_chat_template(tokenizer)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": problem}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def render_prompt(tokenizer: Any, problem: str, fork: int | None, fmt: ForkFormat,
                  system: str | None = None) -> str:
    """Model input for ``problem``: the generation prompt, then ``prefix<think{fork}>suffix``.

    ``fork=None`` renders the plain generation prompt (no forking token). Use :func:`policy_prompt` to let the
    model choose its own token.
    """
    base = generation_prompt(tokenizer, problem, system)
    if fork is None:
        return base
    if fork > fmt.num_forks:
        raise UserError(f"fork {fork} out of range: the model has {fmt.num_forks} forking tokens")
    return base + fmt.prefix + fork_token(fork) + fmt.suffix


def policy_prompt(tokenizer: Any, problem: str, fmt: ForkFormat, system: str | None = None) -> str:
    """Model input at the position where the model chooses its forking token (right after the prefix)."""
    return generation_prompt(tokenizer, problem, system) + fmt.prefix


def parse_fork_spec(spec: str, num_forks: int) -> str | int:
    """``none`` | ``all`` | ``policy`` | a fixed token (``think2``, ``<think2>`` or ``2``)."""
    s = spec.strip().lower()
    if s in {"none", "all", "policy"}:
        return s
    m = re.fullmatch(r"<?(?:think)?(\d+)>?", s)
    if not m:
        raise UserError(f"--fork must be none, all, policy, or a token such as think1 or 1; got {spec!r}")
    i = int(m.group(1))
    if not 1 <= i <= max(num_forks, 1) or num_forks == 0:
        raise UserError(f"--fork {spec}: the model has {num_forks} forking tokens (use --num-forks to say how many)")
    return i


def forks_for_samples(mode: str | int, n: int, num_forks: int) -> list[int | None]:
    """The forking token of each of the ``n`` samples of a question (None = no token / model's choice).

    ``all`` interleaves: sample j gets token (j mod N) + 1, so any prefix of the samples is balanced.
    """
    if mode == "all":
        if num_forks < 1:
            raise UserError("--fork all needs forking tokens; the model has none (set --num-forks)")
        return [(j % num_forks) + 1 for j in range(n)]
    if isinstance(mode, int):
        return [mode] * n
    return [None] * n

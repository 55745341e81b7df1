"""GFPO's maths: the policy over the forking tokens, advantages and losses (pure where possible; oracle-tested).

π(g_i | x) is the model's softmax restricted to the N forking tokens at the fork position
(:func:`forkctl.models.fork_log_probs`). Two parametrisations are trained:

- ``full``: every parameter, through the model's own logits;
- ``fork-head``: only the forking tokens' output rows (a :class:`ForkHead`), on the frozen hidden state at the
  fork position (:func:`forkctl.models.fork_hidden_states`). At the start both give the same π.
"""

from __future__ import annotations

import contextlib
import math
from contextlib import AbstractContextManager
from typing import Any, Callable

import torch

from forkctl.models import fork_hidden_states, fork_log_probs


class ForkHead(torch.nn.Module):
    """The forking tokens' output rows, untied from everything else: logits = h · W_forkᵀ."""

    def __init__(self, rows: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(rows.detach().clone().float())

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.float() @ self.weight.t()


def head_log_probs(hidden: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """log π from fork-position hidden states and forking-token output rows (a reference head, say)."""
    return torch.log_softmax(hidden.float() @ rows.to(hidden.device).float().t(), dim=-1)


class ForkPolicy:
    """log π(g_i | x) over the N forking tokens, for either training mode.

    ``model`` is the plain model (generation, saving); ``trainable`` is what gradients flow through, wrapped by
    ``accelerate`` when several processes run: the whole model (``full``) or a :class:`ForkHead` (``fork-head``).
    ``autocast``: the context the full model's forward runs in (bf16 autocast over fp32 weights, or nothing).
    """

    def __init__(self, model: Any, tokenizer: Any, fork_ids: list[int], train: str,
                 autocast: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext) -> None:
        self.model, self.tokenizer, self.fork_ids, self.train = model, tokenizer, fork_ids, train
        self.autocast = autocast
        self.head: ForkHead | None = None
        if train == "fork-head":
            for p in model.parameters():
                p.requires_grad_(False)
            self.head = ForkHead(model.get_output_embeddings().weight[fork_ids])
            self.head.to(model.get_input_embeddings().weight.device)
        self.trainable: Any = self.head if self.head is not None else model

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.trainable.parameters() if p.requires_grad]

    def log_probs(self, prompts: list[str]) -> torch.Tensor:
        """(batch, N) log-probabilities; differentiable with respect to the trained parameters only."""
        if self.head is not None:
            with torch.no_grad():
                h = fork_hidden_states(self.model, self.tokenizer, prompts)
            return torch.log_softmax(self.trainable(h), dim=-1)
        return fork_log_probs(self.trainable, self.tokenizer, prompts, self.fork_ids, autocast=self.autocast)

    def write_back(self) -> None:
        """Put the trained forking rows into an untied ``lm_head`` (fork-head mode) so checkpoints carry them."""
        if self.head is None:
            return
        out_emb = self.model.get_output_embeddings()
        if out_emb.weight.data_ptr() == self.model.get_input_embeddings().weight.data_ptr():
            out_emb.weight = torch.nn.Parameter(out_emb.weight.detach().clone(), requires_grad=False)
            self.model.config.tie_word_embeddings = False
            if hasattr(self.model.config, "get_text_config"):
                self.model.config.get_text_config().tie_word_embeddings = False
        with torch.no_grad():
            out_emb.weight[self.fork_ids] = self.head.weight.detach().to(out_emb.weight.dtype)


# --------------------------------------------------------------------------------------------------
# Advantages and losses (pure functions; tested directly)


def group_advantages(rewards: list[float], scale: bool) -> list[float]:
    """GRPO-style: r − mean(group), divided by the group's std (population) when ``scale`` and std > 0."""
    mean = sum(rewards) / len(rewards)
    adv = [r - mean for r in rewards]
    if scale:
        std = math.sqrt(sum(a * a for a in adv) / len(adv))
        if std > 0:
            adv = [a / std for a in adv]
    return adv


def _with_kl(loss: Any, logp: Any, beta: float, ref_logp: Any | None, stats: dict[str, float]) -> Any:
    """``loss`` + β·KL(π‖π_ref), exact over the N tokens and averaged over questions (recorded in ``stats``)."""
    if beta > 0 and ref_logp is not None:
        kl = (logp.exp() * (logp - ref_logp)).sum(-1).mean()
        stats["kl"] = float(kl)
        return loss + beta * kl
    return loss


def sampled_loss(logp: Any, actions: Any, advantages: Any, old_logp: Any, clip: float, beta: float,
                 ref_logp: Any | None) -> tuple[Any, dict[str, float]]:
    """PPO-clipped policy-gradient loss on the chosen tokens, plus β·KL(π‖π_ref) (exact, per question).

    ``logp``: (Q, N) current log π; ``actions``: (Q, G) chosen token indices; ``advantages``: (Q, G);
    ``old_logp``: (Q, G) log π at sampling time (detached).
    """
    chosen = logp.gather(1, actions)
    ratio = torch.exp(chosen - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - clip, 1 + clip) * advantages
    loss = -torch.min(unclipped, clipped).mean()
    stats = {"clip_frac": float(((ratio - 1).abs() > clip).float().mean())}
    return _with_kl(loss, logp, beta, ref_logp, stats), stats


def exhaustive_loss(logp: Any, values: Any, beta: float, ref_logp: Any | None) -> tuple[Any, dict[str, float]]:
    """−Σ_i π_i (v_i − b), b = Σ_i π_i v_i (detached): the exact gradient of the expected reward."""
    probs = logp.exp()
    baseline = (probs * values).sum(-1, keepdim=True).detach()
    loss = -(probs * (values - baseline)).sum(-1).mean()
    stats: dict[str, float] = {}
    return _with_kl(loss, logp, beta, ref_logp, stats), stats


def token_values(rewards: list[list[float]], num_forks: int, group_size: int) -> torch.Tensor:
    """(Q, N) v_i(x): the mean reward of each token's ``group_size`` rollouts (exhaustive plan order)."""
    return torch.tensor([[sum(r[(f - 1) * group_size:f * group_size]) / group_size for f in range(1, num_forks + 1)]
                         for r in rewards], dtype=torch.float32)


def scale_values(values: torch.Tensor) -> torch.Tensor:
    """Per question, (v − mean_i v_i) / std_i v_i (0 where every token scored the same): each question weighs the
    same in the update, as GRPO's std scaling does for groups. The per-question gradient direction is unchanged."""
    centred = values - values.mean(-1, keepdim=True)
    std = values.std(-1, unbiased=False, keepdim=True)
    return torch.where(std > 0, centred / std.clamp(min=1e-8), torch.zeros_like(centred))


def entropy(probs: list[float]) -> float:
    return -sum(p * math.log(p) for p in probs if p > 0)

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
    """The forking tokens' output rows, untied from everything else, trained in well-conditioned coordinates.

    logits(h) = h · Wᵀ with W = W₀ + ΔW and ΔW = b ⊗ μ/‖μ‖² + U·P⊥/s, where

    - W₀ are the starting rows (so π starts exactly where the model's own π is);
    - μ is the mean fork-position state over the training prompts and P⊥ = I − μ̂μ̂ᵀ removes it: fork-position
      states share a large common component (the same template, the same position), and a step along it moves
      every question's logits alike — the collapse of issue 10. Here that direction is a separate bias ``b``
      whose feature h·μ/‖μ‖² is ≈ 1 for every prompt;
    - s is the RMS norm of the centred states, so the question-specific features h·P⊥/s have norm ≈ 1 whatever
      the hidden size: with plain SGD, one unit of learning rate moves a question's logits by about one unit of
      (advantage-weighted) gradient, on a 128-wide toy as on a 5120-wide model.

    ΔW is linear in (b, U), so the trained head is exactly an ordinary set of output rows (:meth:`rows`): the
    checkpoint carries it in an untied ``lm_head``, no bias needed. ``mean``/``scale`` default to no centring
    (μ = 0 would be undefined, so the bias is then off) until :meth:`fit_features` sees the training prompts.
    """

    def __init__(self, rows: torch.Tensor) -> None:
        super().__init__()
        rows = rows.detach().clone().float()
        self.register_buffer("start", rows)
        self.register_buffer("mean", torch.zeros(rows.shape[1], device=rows.device))
        self.register_buffer("scale", torch.ones((), device=rows.device))
        self.bias = torch.nn.Parameter(torch.zeros(rows.shape[0], device=rows.device))
        self.delta = torch.nn.Parameter(torch.zeros_like(rows))

    @torch.no_grad()
    def fit_features(self, hidden: torch.Tensor) -> None:
        """Set μ and s from fork-position states of training prompts (before any update)."""
        h = hidden.float().to(self.start.device)
        self.mean.copy_(h.mean(0))
        centred = h - self.mean
        self.scale.copy_(centred.pow(2).sum(-1).mean().sqrt().clamp(min=1e-6))

    def rows(self) -> torch.Tensor:
        """The (N, d) output rows W = W₀ + ΔW this head computes (differentiable in ``bias`` and ``delta``)."""
        mu = self.mean
        norm2 = mu.pow(2).sum()
        if float(norm2) == 0.0:
            return self.start + self.delta / self.scale
        unit = mu / norm2.sqrt()
        projected = self.delta - (self.delta @ unit)[:, None] * unit[None, :]  # U·P⊥
        return self.start + self.bias[:, None] * (mu / norm2)[None, :] + projected / self.scale

    @property
    def weight(self) -> torch.Tensor:
        return self.rows()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.float() @ self.rows().t()

    def row_change(self, bias_step: torch.Tensor, delta_step: torch.Tensor) -> torch.Tensor:
        """ΔW for a step (bias_step, delta_step) in the parameters (ΔW is linear in them)."""
        mu = self.mean
        norm2 = mu.pow(2).sum()
        if float(norm2) == 0.0:
            return delta_step / self.scale
        unit = mu / norm2.sqrt()
        projected = delta_step - (delta_step @ unit)[:, None] * unit[None, :]
        return bias_step[:, None] * (mu / norm2)[None, :] + projected / self.scale


def step_kl(logit_change: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Mean over questions of KL(π‖π_new) to second order, ½ Var_π(Δlogits), for logit changes (Q, N)."""
    centred = logit_change - (probs * logit_change).sum(-1, keepdim=True)
    return 0.5 * (probs * centred.pow(2)).sum(-1).mean()


def trust_region_lr(head: ForkHead, hidden: torch.Tensor, probs: torch.Tensor, lr: float, max_kl: float) -> float:
    """The SGD step size for the head's current gradients: ``lr``, shortened so that the batch's mean KL between
    π before and after the step is at most ``max_kl`` (to second order). A bound in π-space does not depend on
    the hidden size, the feature scale or how imbalanced a batch is, so no single step can saturate π."""
    if head.bias.grad is None or head.delta.grad is None or max_kl <= 0:
        return lr
    change = hidden.float() @ head.row_change(-head.bias.grad, -head.delta.grad).t()  # Δlogits of a unit step
    kl_unit = float(step_kl(change, probs.to(change.device).float()))
    if kl_unit <= 0:
        return lr
    return min(lr, math.sqrt(max_kl / kl_unit))  # KL grows as the square of the step size


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
        self.last_hidden: torch.Tensor | None = None
        if train == "fork-head":
            for p in model.parameters():
                p.requires_grad_(False)
            self.head = ForkHead(model.get_output_embeddings().weight[fork_ids])
            self.head.to(model.get_input_embeddings().weight.device)
        self.trainable: Any = self.head if self.head is not None else model

    @torch.no_grad()
    def fit_head(self, prompts: list[str], batch_size: int = 64) -> None:
        """fork-head: centre and scale the head's features on these (training) prompts' fork-position states."""
        if self.head is None:
            return
        states = [fork_hidden_states(self.model, self.tokenizer, prompts[i:i + batch_size])
                  for i in range(0, len(prompts), batch_size)]
        self.head.fit_features(torch.cat(states))

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.trainable.parameters() if p.requires_grad]

    def log_probs(self, prompts: list[str]) -> torch.Tensor:
        """(batch, N) log-probabilities; differentiable with respect to the trained parameters only."""
        if self.head is not None:
            with torch.no_grad():
                h = fork_hidden_states(self.model, self.tokenizer, prompts)
            self.last_hidden = h  # what the trust region measures the step on
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
            out_emb.weight[self.fork_ids] = self.head.rows().detach().to(out_emb.weight.dtype)


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

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
from typing import Any, Callable, Iterator

import torch

from forkctl.models import fork_hidden_states, fork_log_probs, fork_logits_and_hidden


class ForkHead(torch.nn.Module):
    """The forking tokens' output rows W, untied from everything else: logits = h · Wᵀ, trained by a
    preconditioned step that is well conditioned whatever the model (:meth:`precondition_`).

    Fork-position states share a large common component μ (the same template, the same position; on the
    synthetic-choice model ‖μ‖ ≈ 12.6 against an RMS spread of 0.35 around it). A plain or Adam step on W moves
    every question's logits alike along μ, and Adam's per-coordinate normalisation makes that step grow with the
    hidden size: the collapse of issue 10. So the step is taken as if the features were (a) the centred states
    h·P⊥/s, P⊥ = I − μ̂μ̂ᵀ and s their RMS norm (norm ≈ 1 whatever the hidden size), plus (b) one bias feature
    h·μ/‖μ‖² ≈ 1 that carries the question-independent preference. Both features are linear in h, so W stays an
    ordinary set of output rows (a checkpoint carries it in an untied ``lm_head``, no bias needed); only the
    step's geometry changes. μ and s come from :meth:`fit_features` (until then the step is plain SGD).
    """

    def __init__(self, rows: torch.Tensor) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(rows.detach().clone().float())
        self.register_buffer("mean", torch.zeros(rows.shape[1], device=rows.device))
        self.register_buffer("scale", torch.ones((), device=rows.device))
        self.register_buffer("direction", torch.zeros_like(self.weight))  # the running step direction

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.float() @ self.weight.t()

    @torch.no_grad()
    def fit_features(self, hidden: torch.Tensor) -> None:
        """Set μ and s from fork-position states of training prompts (before any update)."""
        h = hidden.float().to(self.weight.device)
        self.mean.copy_(h.mean(0))
        self.scale.copy_((h - self.mean).pow(2).sum(-1).mean().sqrt().clamp(min=1e-6))

    def precondition(self, grad: torch.Tensor) -> torch.Tensor:
        """The row step of an SGD step on the (bias, centred-feature) coordinates, for a gradient ``grad`` with
        respect to W: G·(μμᵀ/‖μ‖⁴ + P⊥/s²). The chain rule through W = W₀ + b⊗μ/‖μ‖² + U·P⊥/s."""
        norm2 = self.mean.pow(2).sum()
        if float(norm2) == 0.0:
            return grad / self.scale.pow(2)
        along = grad @ self.mean  # (N,)
        perp = grad - (along / norm2)[:, None] * self.mean[None, :]
        return (along / norm2.pow(2))[:, None] * self.mean[None, :] + perp / self.scale.pow(2)

    @torch.no_grad()
    def precondition_(self, momentum: float = 0.0) -> None:
        """Replace ``weight.grad`` by the step direction (then a plain SGD step applies it): the preconditioned
        gradient, averaged over steps with ``momentum`` (heavy ball, d ← m·d + (1−m)·g). Across steps the
        question-specific signal adds up while each batch's own noise averages out, so more of each step's KL
        budget goes to what generalises."""
        if self.weight.grad is None:
            return
        self.direction.mul_(momentum).add_(self.precondition(self.weight.grad), alpha=1 - momentum)
        self.weight.grad.copy_(self.direction)


def head_log_probs(hidden: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """log π from fork-position hidden states and forking-token output rows (a reference head, say)."""
    return torch.log_softmax(hidden.float() @ rows.to(hidden.device).float().t(), dim=-1)


def step_kl(logit_change: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """Mean over questions of KL(π‖π_new) to second order, ½ Var_π(Δlogits), for logit changes (Q, N)."""
    centred = logit_change - (probs * logit_change).sum(-1, keepdim=True)
    return 0.5 * (probs * centred.pow(2)).sum(-1).mean()


def unit_step_kl(head: ForkHead, hidden: torch.Tensor | None, probs: torch.Tensor) -> float:
    """The batch's mean KL between π before and after an SGD step of size 1 along the head's (preconditioned)
    gradient, to second order; 0 when there is no gradient."""
    if head.weight.grad is None or hidden is None:
        return 0.0
    change = hidden.float() @ (-head.weight.grad).t()  # Δlogits of a unit step
    return float(step_kl(change, probs.to(change.device).float()))


def trust_region_lr(kl_unit: float, lr: float, max_kl: float) -> float:
    """The SGD step size: ``lr``, shortened so that the batch's mean KL between π before and after the step is at
    most ``max_kl`` (``kl_unit``: that KL for a step of 1; it grows as the square of the step size). A bound in
    π-space does not depend on the hidden size, the feature scale or how imbalanced a batch is, so no single
    step can saturate π. ``max_kl`` 0: no bound."""
    if max_kl <= 0 or kl_unit <= 0:
        return lr
    return min(lr, math.sqrt(max_kl / kl_unit))


class ForkPolicy:
    """log π(g_i | x) over the N forking tokens, for either training mode; both train a :class:`ForkHead`.

    - ``fork-head``: the head holds the forking rows themselves, on the frozen body's fork-position state;
    - ``full``: every parameter through the model's own logits, plus a head that starts at zero and adds
      h · ΔWᵀ: the forking rows' question-dependent part gets the same well-conditioned, trust-region step as in
      fork-head mode (an AdamW step on those rows is what saturates π; the body keeps AdamW at a small lr).

    ``model`` is the plain model (generation, saving); ``trainable`` is what gradients flow through, wrapped by
    ``accelerate`` when several processes run: the :class:`ForkHead` (``fork-head``) or the whole model
    (``full``, whose head is then ``extra``). ``autocast``: the context the full model's forward runs in.
    """

    def __init__(self, model: Any, tokenizer: Any, fork_ids: list[int], train: str,
                 autocast: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext) -> None:
        self.model, self.tokenizer, self.fork_ids, self.train = model, tokenizer, fork_ids, train
        self.autocast = autocast
        self.last_hidden: torch.Tensor | None = None
        self.tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
        rows = model.get_output_embeddings().weight[fork_ids].detach()
        if train == "fork-head":
            for p in model.parameters():
                p.requires_grad_(False)
            self.head = ForkHead(rows)
        else:
            self.head = ForkHead(torch.zeros_like(rows))  # an offset on the model's own rows
        self.head.to(model.get_input_embeddings().weight.device)
        self.trainable: Any = self.head if train == "fork-head" else model

    @torch.no_grad()
    def fit_head(self, prompts: list[str], batch_size: int = 64) -> None:
        """Centre and scale the head's features on these (training) prompts' fork-position states."""
        states = [fork_hidden_states(self.model, self.tokenizer, prompts[i:i + batch_size])
                  for i in range(0, len(prompts), batch_size)]
        self.head.fit_features(torch.cat(states))

    def parameters(self) -> list[torch.nn.Parameter]:
        """What ``trainable`` trains: the head (fork-head) or the model (full, whose head is trained apart)."""
        return [p for p in self.trainable.parameters() if p.requires_grad]

    def log_probs(self, prompts: list[str]) -> torch.Tensor:
        """(batch, N) log-probabilities; differentiable with respect to the trained parameters only."""
        if self.train == "fork-head":
            with torch.no_grad():
                h = fork_hidden_states(self.model, self.tokenizer, prompts)
            self.last_hidden = h  # what the trust region measures the step on
            return torch.log_softmax(self.trainable(h), dim=-1)
        logits, h = fork_logits_and_hidden(self.trainable, self.tokenizer, prompts, self.fork_ids, self.autocast)
        self.last_hidden = h.detach()
        return torch.log_softmax(logits + self.head(h), dim=-1)

    def write_back(self) -> None:
        """fork-head: put the trained forking rows into an untied ``lm_head`` (for good: the body is frozen and π
        is the head's), so checkpoints carry them."""
        untie_output_embeddings(self.model)
        out_emb = self.model.get_output_embeddings()
        with torch.no_grad():
            out_emb.weight[self.fork_ids] = self.head.weight.detach().to(out_emb.weight)

    @contextlib.contextmanager
    def saved_rows(self) -> Iterator[None]:
        """The model as a checkpoint must hold it while the block runs: fork-head, :meth:`write_back`; full, the
        model's forking rows plus the head's offset in an untied ``lm_head``, undone afterwards (training goes
        on with the same parameters, tied as before, and the offset kept in the head)."""
        if self.train == "fork-head":
            self.write_back()
            yield
            return
        out_emb = self.model.get_output_embeddings()
        before, rows = out_emb.weight, out_emb.weight[self.fork_ids].detach().clone()
        untie_output_embeddings(self.model)
        with torch.no_grad():
            out_emb.weight[self.fork_ids] += self.head.weight.detach().to(out_emb.weight)
        try:
            yield
        finally:
            if self.tied:
                tie_output_embeddings(self.model)
            else:
                with torch.no_grad():
                    before[self.fork_ids] = rows
            assert out_emb.weight is before or self.tied


def tie_output_embeddings(model: Any) -> None:
    """Undo :func:`untie_output_embeddings`: ``lm_head`` shares the input embeddings again."""
    model.get_output_embeddings().weight = model.get_input_embeddings().weight
    model.config.tie_word_embeddings = True
    if hasattr(model.config, "get_text_config"):
        model.config.get_text_config().tie_word_embeddings = True


def untie_output_embeddings(model: Any) -> bool:
    """Give ``lm_head`` its own copy of tied weights (and say so in the config), so the forking rows can differ
    from the forking tokens' input embeddings. Returns whether they were tied."""
    out_emb = model.get_output_embeddings()
    if out_emb.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        return False
    out_emb.weight = torch.nn.Parameter(out_emb.weight.detach().clone(), requires_grad=out_emb.weight.requires_grad)
    model.config.tie_word_embeddings = False
    if hasattr(model.config, "get_text_config"):
        model.config.get_text_config().tie_word_embeddings = False
    return True


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


COLLAPSE_FRACTION = 0.1  # π counts as collapsed below this fraction of the uniform entropy log N


def entropy_collapsed(probs: list[list[float]]) -> bool:
    """Whether π is near-deterministic AND picks the same token for (almost) every question: both the mean
    per-question entropy and the entropy of the batch-mean π are below ``COLLAPSE_FRACTION`` · log N. A policy that
    is sure but picks different tokens for different questions has learned, not collapsed."""
    n = len(probs[0])
    floor = COLLAPSE_FRACTION * math.log(n)
    mean_pi = [sum(p[i] for p in probs) / len(probs) for i in range(n)]
    return sum(entropy(p) for p in probs) / len(probs) < floor and entropy(mean_pi) < floor


def groups_disagree(rewards: list[list[float]], plan: list[list[int]]) -> bool:
    """Whether the batch's rewards say different questions want different things: the best token (unique top mean
    reward among the tokens a question's group tried) differs between questions, or, when every group tried one
    token only (a collapsed π), that token scores ≥ 0.5 better on some questions than on others."""
    best: set[int] = set()
    means = []
    for row, tokens in zip(rewards, plan):
        by_token: dict[int, list[float]] = {}
        for r, t in zip(row, tokens):
            by_token.setdefault(t, []).append(r)
        avg = {t: sum(v) / len(v) for t, v in by_token.items()}
        top = max(avg.values())
        winners = [t for t, v in avg.items() if v == top]
        if len(avg) > 1 and len(winners) == 1:
            best.add(winners[0])
        means.append(sum(row) / len(row))
    return len(best) > 1 or max(means) - min(means) >= 0.5

"""GFPO's fork-head maths (issue 10): the preconditioned step, the KL trust region, collapse detection.

Oracle-style: the preconditioned step is checked against autograd through the reparametrisation it stands for,
and the one-step behaviour on a balanced two-group batch against what each group's questions want.
"""

import math

import pytest
import torch

from forkctl.config import GFPOConfig
from forkctl.policy import (ForkHead, entropy_collapsed, exhaustive_loss, group_advantages, groups_disagree,
                            sampled_loss, step_kl, trust_region_lr, unit_step_kl)


def two_group_states(d: int = 1024, per_group: int = 16, common: float = 100.0, signal: float = 0.05,
                     noise: float = 0.3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Fork-position states like a real model's: a large common component, a small direction telling the two
    question groups apart, and per-question noise. Returns (states, group) with group 0 for the first half."""
    gen = torch.Generator().manual_seed(seed)
    mu = torch.randn(d, generator=gen)
    mu = common * mu / mu.norm()
    u = torch.randn(d, generator=gen)
    u = u - (u @ mu) / (mu @ mu) * mu
    u = u / u.norm()
    group = torch.tensor([0] * per_group + [1] * per_group)
    sign = (1 - 2 * group).float()[:, None]
    h = mu + signal * sign * u + noise * torch.randn(2 * per_group, d, generator=gen) / math.sqrt(d)
    return h, group


def oracle_values(group: torch.Tensor) -> torch.Tensor:
    """Token 1 is right on group 0, token 2 on group 1."""
    return torch.stack([(group == 0).float(), (group == 1).float()], -1)


def default_step(head: ForkHead, h: torch.Tensor, loss: torch.Tensor, probs: torch.Tensor) -> float:
    """What ``forkctl gfpo`` does for a fork-head update with default settings."""
    cfg = GFPOConfig(model="x")
    opt = torch.optim.SGD([head.weight], lr=cfg.learning_rate)
    opt.zero_grad()
    loss.backward()
    head.precondition_()
    lr = trust_region_lr(unit_step_kl(head, h, probs), cfg.learning_rate, cfg.max_kl)
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step()
    return lr


def start_head(d: int, seed: int = 1) -> ForkHead:
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randn(1, d, generator=gen).repeat(2, 1) * 0.01  # equal rows: π starts at 0.5/0.5 everywhere
    return ForkHead(rows)


@pytest.mark.parametrize("estimator", ["exhaustive", "sampled"])
@pytest.mark.parametrize("d", [128, 4096])
def test_one_default_step_on_a_balanced_two_group_batch_cannot_saturate_pi(estimator, d):
    h, group = two_group_states(d=d)
    head = start_head(d)
    head.fit_features(h)
    logp = torch.log_softmax(head(h), -1)
    probs = logp.detach().exp()
    values = oracle_values(group)
    if estimator == "exhaustive":
        loss, _ = exhaustive_loss(logp, values, 0.0, None)
    else:  # G = 4 per question: two of each token, rewarded by the oracle
        actions = torch.tensor([[0, 0, 1, 1]] * len(group))
        rewards = values.gather(1, actions).tolist()
        adv = torch.tensor([group_advantages(r, False) for r in rewards])
        loss, _ = sampled_loss(logp, actions, adv, logp.gather(1, actions).detach(), 0.2, 0.0, None)
    default_step(head, h, loss, probs)
    after = torch.softmax(head(h), -1).detach()
    assert after.max() < 0.8 and after.min() > 0.2  # not saturated ...
    assert torch.all(after[group == 0, 0] > 0.5) and torch.all(after[group == 1, 1] > 0.5)  # ... and right
    assert float(step_kl(torch.log(after) - torch.log(probs), probs)) <= 1.3 * GFPOConfig(model="x").max_kl


def test_the_old_adam_step_saturates_on_the_same_batch_with_a_slight_imbalance():
    """The failure mode the preconditioner removes: Adam on raw rows, 17 against 15 questions."""
    h, group = two_group_states(d=1024, per_group=16)
    h, group = h[:-1], group[:-1]
    head = start_head(1024)
    opt = torch.optim.Adam([head.weight], lr=0.01)
    loss, _ = exhaustive_loss(torch.log_softmax(head(h), -1), oracle_values(group), 0.0, None)
    loss.backward()
    opt.step()
    after = torch.softmax(head(h), -1).detach()
    assert after[:, 0].min() > 0.99  # every question, whichever its group, went to the majority's token


def test_repeated_default_steps_learn_the_per_question_choice_without_collapse():
    h, group = two_group_states(d=512)
    head = start_head(512)
    head.fit_features(h)
    for _ in range(40):
        logp = torch.log_softmax(head(h), -1)
        loss, _ = exhaustive_loss(logp, oracle_values(group), 0.0, None)
        head.weight.grad = None
        default_step(head, h, loss, logp.detach().exp())
    after = torch.softmax(head(h), -1).detach()
    assert torch.all(after[group == 0, 0] > 0.9) and torch.all(after[group == 1, 1] > 0.9)
    assert not entropy_collapsed(after.tolist())


def test_preconditioned_step_is_sgd_on_centred_unit_features_and_a_bias():
    """Oracle: W = W0 + b⊗μ/|μ|² + U·P⊥/s; an SGD step on (b, U) moves W by −precondition(∂L/∂W)."""
    h, group = two_group_states(d=64, per_group=5)
    head = start_head(64)
    head.fit_features(h)
    mu, s = head.mean, head.scale
    unit = mu / mu.norm()
    perp = torch.eye(64) - torch.outer(unit, unit)
    b = torch.zeros(2, requires_grad=True)
    u = torch.zeros(2, 64, requires_grad=True)
    w = head.weight.detach() + b[:, None] * (mu / mu.pow(2).sum())[None, :] + u @ perp / s
    values = oracle_values(group)
    exhaustive_loss(torch.log_softmax(h @ w.t(), -1), values, 0.0, None)[0].backward()
    expected = (b.grad[:, None] * (mu / mu.pow(2).sum())[None, :] + u.grad @ perp / s)  # the SGD step on W (lr 1)
    exhaustive_loss(torch.log_softmax(head(h), -1), values, 0.0, None)[0].backward()
    head.precondition_()
    torch.testing.assert_close(head.weight.grad, expected, rtol=1e-4, atol=1e-6)


def test_features_are_scale_free_in_the_hidden_size():
    """The centred features have RMS norm 1 whatever d: the same lr means the same logit step."""
    for d in (64, 4096):
        h, _ = two_group_states(d=d)
        head = start_head(d)
        head.fit_features(h)
        centred = (h - head.mean) / head.scale
        assert centred.pow(2).sum(-1).mean().sqrt() == pytest.approx(1.0, rel=1e-4)


def test_trust_region_bounds_the_second_order_kl():
    h, group = two_group_states(d=256)
    head = start_head(256)
    head.fit_features(h)
    logp = torch.log_softmax(head(h), -1)
    exhaustive_loss(logp, oracle_values(group), 0.0, None)[0].backward()
    head.precondition_()
    probs = logp.detach().exp()
    kl = unit_step_kl(head, h, probs)
    lr = trust_region_lr(kl, 1e6, 0.01)
    change = h @ (-lr * head.weight.grad).t()
    assert float(step_kl(change, probs)) == pytest.approx(0.01, rel=1e-4)
    assert trust_region_lr(kl, 1e-3, 0.01) == 1e-3  # a small lr is kept as is
    assert trust_region_lr(kl, 5.0, 0.0) == 5.0  # 0 = off


def test_collapse_and_disagreement_oracles():
    sure_same = [[0.999, 0.001]] * 4
    sure_different = [[0.999, 0.001], [0.001, 0.999]] * 2
    assert entropy_collapsed(sure_same)
    assert not entropy_collapsed(sure_different)  # a sure per-question choice is learning, not collapse
    assert not entropy_collapsed([[0.5, 0.5]] * 4)
    # exhaustive plans: token 1 best on q0, token 2 on q1
    assert groups_disagree([[1, 1, 0, 0], [0, 0, 1, 1]], [[1, 1, 2, 2]] * 2)
    assert not groups_disagree([[1, 1, 0, 0], [1, 0, 0, 0]], [[1, 1, 2, 2]] * 2)
    # a collapsed sampled plan: everyone gets token 2, right on q0, wrong on q1
    assert groups_disagree([[1, 1, 1, 1], [0, 0, 0, 0]], [[2, 2, 2, 2]] * 2)
    assert not groups_disagree([[0, 0, 0, 0], [0, 0, 0, 0]], [[2, 2, 2, 2]] * 2)

"""GFPO: advantages, exact gradients, gradient only at the fork position, resume, remote rollouts."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from forkctl import forks
from forkctl.cli import app
from forkctl.gfpo import GFPOConfig, read_log, run_gfpo
from forkctl.policy import ForkPolicy, exhaustive_loss, group_advantages, sampled_loss, scale_values


def test_group_advantages_as_documented():
    assert group_advantages([1, 0, 0, 1], scale=False) == [0.5, -0.5, -0.5, 0.5]
    assert group_advantages([1, 0, 0, 1], scale=True) == [1.0, -1.0, -1.0, 1.0]
    assert group_advantages([1, 1, 1], scale=True) == [0.0, 0.0, 0.0]  # zero variance: no signal, no NaN
    adv = group_advantages([1, 0, 0, 0], scale=True)
    assert adv[0] == pytest.approx(0.75 / (3 ** 0.5 / 4))


def test_scaled_values_standardise_each_question_and_keep_zero_variance_at_zero():
    v = torch.tensor([[1.0, 0.25, 0.0], [0.5, 0.5, 0.5]])
    s = scale_values(v)
    torch.testing.assert_close(s[0], (v[0] - v[0].mean()) / v[0].std(unbiased=False))
    assert torch.equal(s[1], torch.zeros(3))


def test_exhaustive_loss_gradient_is_the_exact_expected_reward_gradient():
    logits = torch.randn(3, 4, requires_grad=True)
    values = torch.rand(3, 4)
    loss, _ = exhaustive_loss(torch.log_softmax(logits, -1), values, beta=0.0, ref_logp=None)
    loss.backward()
    # d/dlogits of -(1/Q) sum_x E_pi[v] is the exact gradient: compare with autograd of the objective itself
    logits2 = logits.detach().clone().requires_grad_(True)
    objective = -(torch.softmax(logits2, -1) * values).sum(-1).mean()
    objective.backward()
    torch.testing.assert_close(logits.grad, logits2.grad)


def test_sampled_loss_is_reinforce_with_one_update_and_clips_ratios():
    logits = torch.randn(2, 3, requires_grad=True)
    logp = torch.log_softmax(logits, -1)
    actions = torch.tensor([[0, 2], [1, 1]])
    adv = torch.tensor([[1.0, -1.0], [0.5, 0.5]])
    old = logp.gather(1, actions).detach()
    loss, stats = sampled_loss(logp, actions, adv, old, clip=0.2, beta=0.0, ref_logp=None)
    loss.backward()
    ref = logits.detach().clone().requires_grad_(True)
    (-(torch.log_softmax(ref, -1).gather(1, actions) * adv).mean()).backward()
    torch.testing.assert_close(logits.grad, ref.grad)
    assert stats["clip_frac"] == 0.0
    # a ratio far outside [1-clip, 1+clip] with positive advantage is clipped: no gradient
    far_old = old - 1.0
    logits.grad = None
    loss, stats = sampled_loss(torch.log_softmax(logits, -1), actions, adv.abs(), far_old, 0.2, 0.0, None)
    loss.backward()
    assert stats["clip_frac"] == 1.0
    assert torch.count_nonzero(logits.grad) == 0


def test_kl_to_start_is_exact_and_zero_at_start():
    logp = torch.log_softmax(torch.randn(2, 4), -1)
    _, stats = exhaustive_loss(logp, torch.zeros(2, 4), beta=1.0, ref_logp=logp)
    assert stats["kl"] == pytest.approx(0.0, abs=1e-7)


def test_only_the_fork_position_receives_gradient(toy_model):
    tok = AutoTokenizer.from_pretrained(toy_model)
    model = AutoModelForCausalLM.from_pretrained(toy_model)
    fmt = forks.resolve_fork_format(toy_model, tok)
    ids = forks.fork_token_ids(tok, 4)
    prompts = [forks.policy_prompt(tok, "What is 1+1?", fmt)]
    prompt_ids = set(tok(prompts[0], add_special_tokens=False)["input_ids"])
    trace_only = next(i for i in tok(" therefore multiply", add_special_tokens=False)["input_ids"]
                      if i not in prompt_ids and i not in ids)

    policy = ForkPolicy(model, tok, ids, "full")
    logp = policy.log_probs(prompts)
    loss, _ = exhaustive_loss(logp, torch.tensor([[1.0, 0.0, 0.0, 0.0]]), 0.0, None)
    loss.backward()
    grad = model.get_input_embeddings().weight.grad
    assert torch.count_nonzero(grad[trace_only]) == 0  # a token seen only in rollouts: exactly zero
    assert torch.count_nonzero(grad[next(iter(prompt_ids))]) > 0
    assert torch.count_nonzero(grad[ids]) > 0  # the forking rows of the (tied) output layer

    model2 = AutoModelForCausalLM.from_pretrained(toy_model)
    head_policy = ForkPolicy(model2, tok, ids, "fork-head")
    loss, _ = exhaustive_loss(head_policy.log_probs(prompts), torch.tensor([[1.0, 0.0, 0.0, 0.0]]), 0.0, None)
    loss.backward()
    assert all(p.grad is None for p in model2.parameters())
    assert torch.count_nonzero(head_policy.head.weight.grad) > 0


def test_fork_head_checkpoint_unties_and_leaves_the_reasoning_untouched(toy_model, tmp_path):
    tok = AutoTokenizer.from_pretrained(toy_model)
    model = AutoModelForCausalLM.from_pretrained(toy_model)
    ids = forks.fork_token_ids(tok, 4)
    policy = ForkPolicy(model, tok, ids, "fork-head")
    with torch.no_grad():
        policy.head.weight.add_(torch.randn_like(policy.head.weight))
    policy.write_back()
    model.save_pretrained(tmp_path / "c")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "c")
    base = AutoModelForCausalLM.from_pretrained(toy_model)
    torch.testing.assert_close(reloaded.lm_head.weight[ids], policy.head.weight)
    x = torch.tensor([tok("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False)["input_ids"]])
    keep = [i for i in range(len(tok)) if i not in ids]
    torch.testing.assert_close(reloaded(x).logits[..., keep], base(x).logits[..., keep])
    torch.testing.assert_close(reloaded.get_input_embeddings().weight, base.get_input_embeddings().weight)


def test_resume_continues_from_the_saved_step(toy_model, questions_file, tmp_path):
    out = tmp_path / "run"
    base = dict(model=str(toy_model), task=str(questions_file), quiet=True, out=str(out), steps=2, batch_size=2, group_size=2,
                max_new_tokens=3, save_every=1)
    run_gfpo(GFPOConfig(**base))
    assert [r["step"] for r in read_log(out / "gfpo_log.jsonl")] == [1, 2]
    with pytest.raises(ValueError, match="--resume"):
        run_gfpo(GFPOConfig(**base))
    result = run_gfpo(GFPOConfig(**{**base, "steps": 4, "resume": True}))
    assert [r["step"] for r in read_log(out / "gfpo_log.jsonl")] == [1, 2, 3, 4]
    assert [h["step"] for h in result["history"]] == [3, 4]
    assert torch.load(out / "gfpo_state.pt", weights_only=False)["step"] == 4
    reloaded = AutoTokenizer.from_pretrained(out)  # the model is --out itself, as for ssft
    assert forks.detect_num_forks(reloaded) == 4
    assert forks.ForkFormat.load(out).num_forks == 4


def test_logs_and_warns_on_all_truncated_zero_variance_batches(toy_model, questions_file, tmp_path):
    result = CliRunner().invoke(app, ["gfpo", "--model", str(toy_model), "--task", str(questions_file), "--out",
                                      str(tmp_path / "g"), "--steps", "1", "--batch-size", "2", "--group-size", "2",
                                      "--max-new-tokens", "2", "--estimator", "exhaustive"])
    assert result.exit_code == 0, result.output
    assert "EVERY rollout hit --max-new-tokens" in result.output
    assert "zero variance" in result.output
    [row] = read_log(tmp_path / "g" / "gfpo_log.jsonl")
    assert row["truncated_frac"] == 1.0 and row["zero_variance_frac"] == 1.0
    assert row["chosen"] == {"1": 4, "2": 4, "3": 4, "4": 4}
    assert len(row["pi_mean"]) == 4 and abs(sum(row["pi_mean"]) - 1) < 1e-6
    for key in ("reward_mean", "pi_entropy", "adv_mean", "adv_std", "adv_min", "adv_max", "loss"):
        assert key in row


def test_bad_options_give_one_line_errors(toy_model, questions_file, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["gfpo", "--model", str(toy_model), "--task", str(questions_file), "--estimator", "x",
                                 "--out", str(tmp_path / "a")])
    assert result.exit_code == 2 and "Invalid value for '--estimator'" in result.output
    result = runner.invoke(app, ["gfpo", "--model", str(toy_model), "--task", str(questions_file), "--group-size", "1",
                                 "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "group-size >= 2" in result.output


@pytest.mark.slow
def test_openai_rollout_backend_against_a_real_server(transformers_server, toy_model, questions_file, tmp_path):
    result = run_gfpo(GFPOConfig(model=str(toy_model), task=str(questions_file), quiet=True, out=str(tmp_path / "o"), steps=1,
                                 batch_size=2, group_size=2, max_new_tokens=3, backend="openai",
                                 base_url=transformers_server.base_url))
    [row] = result["history"]
    assert sum(row["chosen"].values()) == 4


def test_rerun_with_other_settings_is_refused_unless_overwrite(toy_model, questions_file, tmp_path):
    out = tmp_path / "fp"
    base = dict(model=str(toy_model), task=str(questions_file), quiet=True, out=str(out), steps=1, batch_size=2,
                group_size=2, max_new_tokens=2)
    run_gfpo(GFPOConfig(**base))
    with pytest.raises(ValueError, match=r"other settings \(group_size 2 -> 3\)"):
        run_gfpo(GFPOConfig(**{**base, "group_size": 3, "resume": True}))
    result = run_gfpo(GFPOConfig(**{**base, "group_size": 3, "overwrite": True}))
    assert [r["step"] for r in read_log(out / "gfpo_log.jsonl")] == [1] and result["model"] == str(out)
    assert json.loads((out / "gfpo_config.json").read_text())["config"]["group_size"] == 3


def test_warns_when_pi_collapses_while_groups_still_disagree(monkeypatch):
    """The step statistics flag a collapsed π (same token everywhere, near-zero entropy) whose rollouts still
    show that questions want different things, and the report warns; a per-question choice does not warn."""
    from forkctl import console
    from forkctl.gfpo import _report, _step_stats

    warnings: list[str] = []
    monkeypatch.setattr(console, "warn", warnings.append)
    collapsed = [[0.001, 0.999]] * 4
    plan = [[2, 2, 2, 2]] * 4  # a collapsed sampled π: every group rolls out <think2> only
    rewards = [[1.0] * 4, [1.0] * 4, [0.0] * 4, [0.0] * 4]  # right on two questions, wrong on the others
    stats = _step_stats(7, collapsed, rewards, [0.0] * 16, [False] * 16, 0.0, {}, plan)
    assert stats["pi_collapsed"] and stats["groups_disagree"]
    _report(stats, progress=False)
    assert any("π has collapsed" in w and "step 7" in w for w in warnings)

    warnings.clear()
    learned = [[0.999, 0.001], [0.999, 0.001], [0.001, 0.999], [0.001, 0.999]]
    plan = [[1] * 4, [1] * 4, [2] * 4, [2] * 4]
    stats = _step_stats(8, learned, [[1.0] * 4] * 4, [0.0] * 16, [False] * 16, 0.0, {}, plan)
    assert not stats["pi_collapsed"]
    _report(stats, progress=False)
    assert not any("collapsed" in w for w in warnings)


def test_full_mode_checkpoint_carries_the_head_offset_and_training_stays_tied(toy_model, tmp_path):
    tok = AutoTokenizer.from_pretrained(toy_model)
    model = AutoModelForCausalLM.from_pretrained(toy_model)
    ids = forks.fork_token_ids(tok, 4)
    fmt = forks.resolve_fork_format(toy_model, tok)
    prompts = [forks.policy_prompt(tok, "What is 1+1?", fmt)]
    policy = ForkPolicy(model, tok, ids, "full")
    assert policy.tied
    with torch.no_grad():
        policy.head.weight.add_(torch.randn_like(policy.head.weight))
        expected = policy.log_probs(prompts)
        embeddings = model.get_input_embeddings().weight.detach().clone()
    with policy.saved_rows():
        model.save_pretrained(tmp_path / "c")
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied again
    torch.testing.assert_close(model.get_input_embeddings().weight, embeddings)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "c")
    from forkctl.models import fork_log_probs

    with torch.no_grad():
        torch.testing.assert_close(fork_log_probs(reloaded, tok, prompts, ids), expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(policy.log_probs(prompts), expected)


def test_synthetic_choice_task_makes_the_best_token_depend_on_the_question(tmp_path):
    from forkctl.records import TraceSet, read_records
    from forkctl.tasks import get_task
    from forkctl.tasks.synthetic import classify_choice, parse_choice, solve_choice, write_choice_trace_sets

    test, train = get_task("synthetic-choice").load(), get_task("synthetic-choice-train").load()
    assert not {q.problem for q in test} & {q.problem for q in train}  # held-out questions never trained on
    assert sum(q.extra["keyword"] == "first" for q in test) == len(test) // 2  # balanced
    q = test[0]
    p = parse_choice(q.problem)
    front, back = solve_choice(p, "front"), solve_choice(p, "back")
    [[s_front, s_back]] = get_task("synthetic-choice").score([(q, [front, back])])
    assert s_front.correct != s_back.correct  # exactly one mode is right on every question
    assert (s_front.correct if p.keyword == "first" else s_back.correct)
    assert classify_choice(front) == "front" and classify_choice(back) == "back" and classify_choice("x") == "unknown"
    sets = read_records(write_choice_trace_sets(tmp_path / "t.jsonl", 10), TraceSet)
    assert all(sorted(t.extra["strategy"] for t in s.traces) == ["back", "front"] for s in sets)

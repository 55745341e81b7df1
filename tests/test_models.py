"""models.py: one dtype policy (the bf16 learner really moves), π over the forking tokens against an oracle."""

from __future__ import annotations

import contextlib

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from forkctl import forks
from forkctl.models import fork_hidden_states, fork_log_probs, load_for_generation, load_for_training, \
    load_tokenizer
from forkctl.policy import ForkPolicy, exhaustive_loss, head_log_probs


def _cpu_bf16_autocast_works() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.ones(2, 2) @ torch.ones(2, 2)
        return True
    except (RuntimeError, AssertionError):  # pragma: no cover - old CPU builds
        return False


def _one_step(model, tok, fork_ids, autocast, prompts) -> dict[str, torch.Tensor]:
    """One --train full AdamW step at lr 1e-6 (gfpo's default for full); returns the weights before it."""
    with torch.no_grad():  # the toy's forking rows start equal (π uniform, no gradient below them): make them differ
        rows = model.get_output_embeddings().weight
        gen = torch.Generator().manual_seed(0)
        for i in fork_ids:
            rows[i] = (torch.randn(rows.shape[1], generator=gen) * 0.5).to(rows.dtype)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    policy = ForkPolicy(model, tok, fork_ids, "full", autocast=autocast)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-6, weight_decay=0.0)
    loss, _ = exhaustive_loss(policy.log_probs(prompts), torch.tensor([[1.0, 0.0, 0.0, 0.0]] * len(prompts)), 0.0,
                              None)
    loss.backward()
    optimizer.step()
    return before


def _changed(model, before: dict[str, torch.Tensor]) -> float:
    """The share of the weights that moved, among those with a nonzero gradient and magnitude >= 0.01 (where a
    1e-6 step is a relative change of 1e-4: representable in fp32, far below bf16's 2^-8 resolution; zero-initialised
    biases would move in either dtype)."""
    moved = total = 0
    for n, p in model.named_parameters():
        if p.grad is not None:
            touched = (p.grad != 0) & (before[n].abs() >= 0.01)
            moved += int((p.detach() != before[n])[touched].sum())
            total += int(touched.sum())
    assert total > 0
    return moved / total


@pytest.mark.skipif(not _cpu_bf16_autocast_works(), reason="no bf16 autocast on this CPU")
def test_bf16_learner_keeps_fp32_master_weights_and_moves_at_lr_1e6(toy_model) -> None:
    tok = load_tokenizer(str(toy_model))
    fmt = forks.resolve_fork_format(toy_model, tok)
    fork_ids = forks.fork_token_ids(tok, 4)
    prompts = [forks.policy_prompt(tok, "What is 2+3?", fmt), forks.policy_prompt(tok, "Add 7 and 11.", fmt)]

    # The way a GPU run loads its learner (--train full --bf16), with CPU autocast standing in for CUDA's.
    model, tok, autocast = load_for_training(str(toy_model), bf16=True, device="cpu")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with autocast():
        assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.dtype == torch.bfloat16  # autocast is on
    before = _one_step(model, tok, fork_ids, autocast, prompts)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert _changed(model, before) > 0.9  # nearly every weight with a gradient moved by ~1e-6

    # The old path (bf16 weights updated directly): a 1e-6 step rounds away for nearly every weight.
    old = AutoModelForCausalLM.from_pretrained(toy_model, dtype=torch.bfloat16)
    before = _one_step(old, tok, fork_ids, contextlib.nullcontext, prompts)
    assert _changed(old, before) == 0.0


def test_fork_log_probs_equals_full_softmax_restricted_and_renormalised(toy_model) -> None:
    model, tok = load_for_generation(str(toy_model), device="cpu")
    assert next(model.parameters()).dtype == torch.float32  # auto on CPU
    fmt = forks.resolve_fork_format(toy_model, tok)
    fork_ids = forks.fork_token_ids(tok, 4)
    problems = ["hi", "a much longer question that needs padding on the left: what is 12 * 13?", "What is 2+3?"]
    prompts = [forks.policy_prompt(tok, p, fmt) for p in problems]
    with torch.no_grad():
        got = fork_log_probs(model, tok, prompts, fork_ids)  # one left-padded batch
        in_twos = fork_log_probs(model, tok, prompts, fork_ids, batch_size=2)
        for row, prompt in zip(got, prompts):  # the oracle: each prompt alone, no padding, the whole vocabulary
            ids = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]])
            probs = torch.softmax(model(input_ids=ids).logits[0, -1].double(), dim=-1)
            restricted = probs[fork_ids] / probs[fork_ids].sum()
            torch.testing.assert_close(row.double(), restricted.log(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(in_twos, got, atol=1e-5, rtol=1e-5)


def test_fork_head_at_the_start_gives_the_same_policy(toy_model) -> None:
    """The fork-head path (hidden state at the fork position x the forking rows) is the same π as the full model's
    logits, as long as the rows are the model's own (before any training)."""
    model, tok, _ = load_for_training(str(toy_model))
    fmt = forks.resolve_fork_format(toy_model, tok)
    fork_ids = forks.fork_token_ids(tok, 4)
    prompts = [forks.policy_prompt(tok, p, fmt) for p in ("hi", "What is 2+3? Explain.")]
    with torch.no_grad():
        full = fork_log_probs(model, tok, prompts, fork_ids)
        head = head_log_probs(fork_hidden_states(model, tok, prompts), model.get_output_embeddings().weight[fork_ids])
    torch.testing.assert_close(head, full, atol=1e-5, rtol=1e-5)


def test_tokenizer_gets_a_pad_token(toy_model, tmp_path) -> None:
    tok = AutoTokenizer.from_pretrained(toy_model)
    tok.pad_token = None
    tok.save_pretrained(tmp_path / "t")
    assert AutoTokenizer.from_pretrained(tmp_path / "t").pad_token_id is None
    fixed = load_tokenizer(str(tmp_path / "t"))
    assert fixed.pad_token_id == fixed.eos_token_id

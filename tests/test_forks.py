"""Forking tokens: added as single special tokens, initialised in-distribution, rendered the same everywhere."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from forkctl import forks
from forkctl.toy import build_toy_model


def test_toy_model_has_single_token_forks_and_reference_layout(toy_model):
    tok = AutoTokenizer.from_pretrained(toy_model)
    fmt = forks.resolve_fork_format(toy_model, tok)
    assert fmt == forks.ForkFormat(num_forks=4, prefix="<|im_start|>", suffix="\n")
    prompt = forks.render_prompt(tok, "What is 2+2?", 3, fmt)
    # the reference checkpoints' layout: ...<|im_start|>assistant\n<|im_start|><think3>\n
    assert prompt.endswith("<|im_start|>assistant\n<|im_start|><think3>\n")
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert ids[-2] == forks.fork_token_ids(tok, 4)[2]
    assert tok.convert_ids_to_tokens(ids[-2]) == "<think3>"


def test_prefix_and_suffix_are_configurable(toy_model):
    tok = AutoTokenizer.from_pretrained(toy_model)
    fmt = forks.resolve_fork_format(toy_model, tok, prefix="", suffix="")
    assert forks.render_prompt(tok, "q", 1, fmt).endswith("assistant\n<think1>")
    assert forks.render_prompt(tok, "q", None, fmt).endswith("assistant\n")
    with pytest.raises(ValueError, match="out of range"):
        forks.render_prompt(tok, "q", 5, fmt)


def test_add_fork_tokens_initialises_rows_with_the_mean_embedding(tmp_path):
    path = build_toy_model(tmp_path / "m", num_forks=0)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    before = model.get_input_embeddings().weight.detach().clone()
    ids = forks.add_fork_tokens(tok, model, 3, init="mean")
    after = model.get_input_embeddings().weight
    assert after.shape[0] == before.shape[0] + 3 == len(tok)
    for i in ids:
        torch.testing.assert_close(after[i], before.mean(0))
    torch.testing.assert_close(after[: before.shape[0]], before)
    # idempotent, and copying an existing token works
    assert forks.add_fork_tokens(tok, model, 3) == ids
    ids5 = forks.add_fork_tokens(tok, model, 5, init="<|im_end|>")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    torch.testing.assert_close(model.get_input_embeddings().weight[ids5[4]], model.get_input_embeddings().weight[im_end])


def test_default_init_is_the_mean_plus_small_seeded_noise_so_tokens_start_distinct(tmp_path):
    path = build_toy_model(tmp_path / "m", num_forks=0)
    rows = []
    for _ in range(2):  # the same seed gives the same rows
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path)
        before = model.get_input_embeddings().weight.detach().clone()
        ids = forks.add_fork_tokens(tok, model, 3, seed=7)
        rows.append(model.get_input_embeddings().weight[ids].detach().clone())
    torch.testing.assert_close(rows[0], rows[1])
    mean, spread = before.mean(0), before.std(0) * forks.FORK_INIT_NOISE
    for i in range(3):
        z = (rows[0][i] - mean) / spread  # standard-normal noise per dimension
        assert 0.7 < float(z.std()) < 1.3 and abs(float(z.mean())) < 0.3
    assert torch.cdist(rows[0], rows[0])[~torch.eye(3, dtype=torch.bool)].min() > 0  # pairwise distinct


def test_saved_checkpoint_reloads_with_tokens_and_format(tmp_path, toy_model):
    tok = AutoTokenizer.from_pretrained(toy_model)
    model = AutoModelForCausalLM.from_pretrained(toy_model)
    model.save_pretrained(tmp_path / "c")
    tok.save_pretrained(tmp_path / "c")
    forks.ForkFormat(4, prefix="", suffix="\n\n").save(tmp_path / "c")
    tok2 = AutoTokenizer.from_pretrained(tmp_path / "c")
    assert forks.fork_token_ids(tok2, 4) == forks.fork_token_ids(tok, 4)
    assert forks.detect_num_forks(tok2) == 4
    assert forks.resolve_fork_format(tmp_path / "c", tok2).suffix == "\n\n"


@pytest.mark.parametrize("spec,expected", [("none", "none"), ("all", "all"), ("policy", "policy"), ("think2", 2),
                                           ("2", 2), ("<think4>", 4), ("THINK1", 1)])
def test_parse_fork_spec(spec, expected):
    assert forks.parse_fork_spec(spec, 4) == expected


@pytest.mark.parametrize("spec", ["think5", "0", "banana"])
def test_parse_fork_spec_rejects(spec):
    with pytest.raises(ValueError):
        forks.parse_fork_spec(spec, 4)


def test_all_interleaves_tokens_so_prefixes_are_balanced():
    assert forks.forks_for_samples("all", 8, 4) == [1, 2, 3, 4, 1, 2, 3, 4]
    assert forks.forks_for_samples(2, 3, 4) == [2, 2, 2]
    assert forks.forks_for_samples("none", 2, 4) == [None, None]


def test_last_complete_checkpoint_skips_and_drops_one_cut_short(tmp_path):
    for step, complete in [(3, True), (6, True), (9, False)]:
        ckpt = tmp_path / f"checkpoint-{step}"
        ckpt.mkdir()
        (ckpt / "trainer_state.json").write_text("{}")
        if complete:
            (ckpt / forks.FORK_CONFIG_FILE).write_text("{}")
    assert forks.last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-6")
    assert (tmp_path / "checkpoint-9").exists()
    assert forks.last_complete_checkpoint(tmp_path, drop_incomplete=True) == str(tmp_path / "checkpoint-6")
    assert not (tmp_path / "checkpoint-9").exists()
    assert forks.last_complete_checkpoint(tmp_path / "missing") is None

"""forkctl ssft: matching, cost matrix, loss masking, gradients, bad data, checkpoints, the CLI."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from forkctl import forks
from forkctl.config import build_config
from forkctl.matching import IGNORE, QuestionItem, assign, cost_matrices, cost_matrix, pair_batch
from forkctl.ssft import SSFTConfig, load_items, prepare_model, read_matching_log, run_ssft



# --------------------------------------------------------------------------------------------------
# Fixtures: a tiny untied model with 4 forking tokens (untied, so input-embedding gradients are exact)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    from forkctl.toy import build_toy_model

    path = build_toy_model(tmp_path_factory.mktemp("ssft") / "m", num_forks=4, hidden_size=32, num_layers=2,
                           num_heads=2, num_kv_heads=1, intermediate_size=64, tie_embeddings=False)
    model, tok, fmt, fork_ids = prepare_model(SSFTConfig(model=str(path), trace_sets="unused"))
    with torch.no_grad():  # distinct forking-token rows, so costs are not tied
        gen = torch.Generator().manual_seed(0)
        emb = model.get_input_embeddings().weight
        for i in fork_ids:
            emb[i] = torch.randn(emb.shape[1], generator=gen) * 0.5
    return path, model, tok, fmt, fork_ids


def write_sets(path: Path, sets: list[dict]) -> Path:
    path.write_text("".join(json.dumps(s) + "\n" for s in sets))
    return path


def trace_set(qid: str, texts: list[str], problem: str = "what is 2 + 3 then") -> dict:
    return {"id": qid, "problem": problem, "answer": "5",
            "traces": [{"teacher": "t", "text": t, "strategy": f"s{k}"} for k, t in enumerate(texts)]}


TEXTS = ["first we add the numbers so the total is 5", "count up from 2 three times gives 5 \\boxed{5}",
         "the answer is 5", "let 2 + 3 = 5 hence 5"]


def items_for(tmp_path: Path, tiny, sets: list[dict], matching: str = "bipartite") -> list[QuestionItem]:
    _, _, tok, fmt, fork_ids = tiny
    data = write_sets(tmp_path / "d.jsonl", sets)
    items, _ = load_items(data, tok, fmt, fork_ids, matching, 512)
    return items


def make_trainer(tiny, tmp_path: Path, matching: str = "bipartite", fork_label: bool = True, prefix: int = 1000):
    from transformers import TrainingArguments

    from forkctl.ssft import SSFTTrainer

    _, model, tok, _, fork_ids = tiny
    args = TrainingArguments(output_dir=str(tmp_path / "trainer"), max_steps=1, report_to=[], disable_tqdm=True,
                             per_device_train_batch_size=2, remove_unused_columns=False)
    return SSFTTrainer(model=model, args=args, train_dataset=[], processing_class=tok, fork_ids=fork_ids,
                       matching=matching, match_prefix_tokens=prefix, fork_label=fork_label, matching_log=None)


# --------------------------------------------------------------------------------------------------
# Assignment


@pytest.mark.parametrize("n,m", [(1, 1), (2, 2), (3, 2), (3, 3), (4, 1), (4, 3), (5, 2), (5, 5), (6, 3)])
def test_assignment_equals_brute_force(n: int, m: int) -> None:
    rng = np.random.default_rng(n * 10 + m)
    for trial in range(25):
        cost = rng.random((n, m)) if trial % 2 else rng.integers(0, 3, (n, m)).astype(float)  # ties too
        sigma = assign(cost)
        assert len(sigma) == m and len(set(sigma)) == m and all(0 <= t < n for t in sigma)
        best = min(sum(cost[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))
        assert sum(cost[sigma[j], j] for j in range(m)) == pytest.approx(best)


def test_assignment_refuses_more_traces_than_tokens() -> None:
    with pytest.raises(ValueError, match="3 traces but only 2"):
        assign(np.zeros((2, 3)))


# --------------------------------------------------------------------------------------------------
# Cost matrix


def test_cost_matrix_equals_unpadded_per_pair_nll(tmp_path: Path, tiny) -> None:
    _, model, tok, _, fork_ids = tiny
    items = items_for(tmp_path, tiny, [trace_set("q1", TEXTS[:3]), trace_set("q2", TEXTS[2:], "a much longer "
                                                                             "problem text: what is 2 + 3 then")])
    prefix = 6
    batched = cost_matrices(model, items, fork_ids, prefix, tok.pad_token_id)
    for item, got in zip(items, batched):
        assert got.shape == (4, len(item.traces))
        np.testing.assert_allclose(cost_matrix(model, item, fork_ids, prefix, tok.pad_token_id), got, atol=1e-4)
        np.testing.assert_allclose(cost_matrix(model, item, fork_ids, prefix, tok.pad_token_id, chunk=3), got,
                                   atol=1e-4)
        for i in range(4):
            for j, trace in enumerate(item.traces):
                prompt = list(item.prompt)
                prompt[item.fork_pos] = fork_ids[i]
                ids = torch.tensor([prompt + trace[:prefix]])
                with torch.no_grad():
                    logits = model(input_ids=ids).logits[0]
                p = len(prompt)
                nll = torch.nn.functional.cross_entropy(logits[p - 1:-1], ids[0, p:]).item()
                assert got[i, j] == pytest.approx(nll, abs=1e-4)


def test_cost_matrix_has_no_grad(tmp_path: Path, tiny) -> None:
    _, model, tok, _, fork_ids = tiny
    items = items_for(tmp_path, tiny, [trace_set("q", TEXTS[:2])])
    model.zero_grad(set_to_none=True)
    cost_matrices(model, items, fork_ids, 4, tok.pad_token_id)
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------------------------------
# Loss


def test_prompt_tokens_carry_no_loss(tmp_path: Path, tiny) -> None:
    item = items_for(tmp_path, tiny, [trace_set("q", TEXTS[:2])])[0]
    _, _, _, fmt, fork_ids = tiny
    for fork_label in (True, False):
        batch = pair_batch([(item, 2, item.traces[0])], fork_ids, 0, fork_label)
        labels, ids = batch["labels"][0].tolist(), batch["input_ids"][0].tolist()
        p = len(item.prompt)
        assert ids[item.fork_pos] == fork_ids[2]
        assert all(x == IGNORE for x in labels[:item.fork_pos])  # the chat prompt: never
        if fork_label:  # the forking token and the suffix after it
            assert labels[item.fork_pos:p] == ids[item.fork_pos:p]
        else:
            assert all(x == IGNORE for x in labels[:p])
        assert labels[p:p + len(item.traces[0])] == item.traces[0]  # the trace and its end token


def test_loss_is_mean_nll_of_response_tokens(tmp_path: Path, tiny) -> None:
    trainer = make_trainer(tiny, tmp_path, matching="fixed", fork_label=False)
    _, model, _, _, fork_ids = tiny
    item = items_for(tmp_path, tiny, [trace_set("q", TEXTS[:2])])[0]
    with torch.no_grad():
        loss = trainer.compute_loss(model, {"questions": [item]}).item()
        total, count = 0.0, 0
        for j, trace in enumerate(item.traces):
            prompt = list(item.prompt)
            prompt[item.fork_pos] = fork_ids[j]
            ids = torch.tensor([prompt + trace])
            logits = model(input_ids=ids).logits[0]
            nll = torch.nn.functional.cross_entropy(logits[len(prompt) - 1:-1], ids[0, len(prompt):],
                                                    reduction="sum")
            total, count = total + nll.item(), count + len(trace)
    assert loss == pytest.approx(total / count, rel=1e-4)


def test_loss_invariant_to_shuffling_traces(tmp_path: Path, tiny) -> None:
    trainer = make_trainer(tiny, tmp_path)
    _, model, _, _, _ = tiny
    texts = TEXTS[:3]
    shuffled = [texts[2], texts[0], texts[1]]
    a = items_for(tmp_path, tiny, [trace_set("q", texts), trace_set("r", TEXTS[1:])])
    b = items_for(tmp_path, tiny, [trace_set("q", shuffled), trace_set("r", TEXTS[1:][::-1])])
    with torch.no_grad():
        la = trainer.compute_loss(model, {"questions": a}).item()
        lb = trainer.compute_loss(model, {"questions": b}).item()
    assert la == pytest.approx(lb, rel=1e-5)
    # and the same trace keeps the same token
    sig_a = trainer.match(a[0], cost_matrix(model, a[0], trainer.fork_ids, 1000, trainer.pad_id))
    sig_b = trainer.match(b[0], cost_matrix(model, b[0], trainer.fork_ids, 1000, trainer.pad_id))
    assert sig_b == [sig_a[2], sig_a[0], sig_a[1]]


def test_unmatched_tokens_get_no_gradient(tmp_path: Path, tiny) -> None:
    trainer = make_trainer(tiny, tmp_path)
    _, model, _, _, fork_ids = tiny
    item = items_for(tmp_path, tiny, [trace_set("q", TEXTS[:2])])[0]  # M=2 traces, N=4 tokens
    sigma = trainer.match(item, cost_matrix(model, item, fork_ids, 1000, trainer.pad_id))
    model.zero_grad(set_to_none=True)
    trainer.compute_loss(model, {"questions": [item]}).backward()
    grad = model.get_input_embeddings().weight.grad
    for t, tid in enumerate(fork_ids):
        if t in sigma:
            assert grad[tid].abs().sum() > 0, f"matched <think{t + 1}> got no gradient"
        else:
            assert torch.count_nonzero(grad[tid]) == 0, f"unmatched <think{t + 1}> got gradient"
    model.zero_grad(set_to_none=True)


def test_matching_modes(tmp_path: Path, tiny) -> None:
    item = items_for(tmp_path, tiny, [trace_set("q", TEXTS[:3])])[0]
    assert make_trainer(tiny, tmp_path, "mixed").match(item) == [0, 0, 0]
    assert make_trainer(tiny, tmp_path, "fixed").match(item) == [0, 1, 2]
    rnd = make_trainer(tiny, tmp_path, "random")
    draws = []
    for step in range(20):
        rnd.state.global_step = step
        s = rnd.match(item)
        assert len(set(s)) == 3 and all(0 <= t < 4 for t in s)
        assert s == rnd.match(item)  # deterministic for a (seed, step, question)
        draws.append(tuple(s))
    assert len(set(draws)) > 3


# --------------------------------------------------------------------------------------------------
# Bad data


def test_bad_data_is_skipped_and_counted_or_stops_with_strict(tmp_path: Path, tiny) -> None:
    _, _, tok, fmt, fork_ids = tiny
    long_text = " ".join(["word"] * 600)
    sets = [trace_set("ok", TEXTS[:2]),
            trace_set("too-many", TEXTS + ["one more"]),          # 5 traces, 4 tokens: question skipped
            trace_set("empty", ["   ", TEXTS[0]]),                 # the empty trace dropped
            trace_set("long", [long_text, TEXTS[1]]),              # the long trace dropped
            trace_set("all-long", [long_text])]                    # nothing left: question skipped
    data = write_sets(tmp_path / "bad.jsonl", sets)
    items, report = load_items(data, tok, fmt, fork_ids, "bipartite", 256)
    assert [i.qid for i in items] == ["ok", "empty", "long"]
    assert [len(i.traces) for i in items] == [2, 1, 1]
    assert (report.questions_too_many_traces, report.empty_traces, report.traces_too_long,
            report.questions_without_traces) == (1, 1, 2, 1)
    assert "1 questions with more traces than forking tokens" in report.summary()
    # mixed mode has no limit on traces per question
    items, report = load_items(data, tok, fmt, fork_ids, "mixed", 256)
    assert "too-many" in [i.qid for i in items]
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: 5 traces but only 4 forking tokens"):
        load_items(data, tok, fmt, fork_ids, "bipartite", 256, strict=True)
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: traces\[0\]: prompt \+ trace"):
        load_items(data, tok, fmt, fork_ids, "bipartite", 20, strict=True)
    with pytest.raises(ValueError, match="no usable question"):
        load_items(write_sets(tmp_path / "x.jsonl", [sets[4]]), tok, fmt, fork_ids, "bipartite", 256)
    (tmp_path / "broken.jsonl").write_text('{"id": 1, "problem": "p"}\n')
    with pytest.raises(ValueError, match=r"broken\.jsonl:1: field 'traces': missing"):
        load_items(tmp_path / "broken.jsonl", tok, fmt, fork_ids, "bipartite", 256)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="--matching"):
        build_config(SSFTConfig, ("", {"model": "m", "trace_sets": "d", "matching": "greedy"}))
    with pytest.raises(ValueError, match="divisible"):
        SSFTConfig(model="m", trace_sets="d", batch_size=3, grad_accum=2).validate()
    with pytest.raises(ValueError, match="--model is required"):
        SSFTConfig(trace_sets="d").validate()


# --------------------------------------------------------------------------------------------------
# End to end: a run from a model without forking tokens, checkpoint reload, matching log, resume


def test_run_saves_reloadable_checkpoint_with_tokens(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forkctl.toy import build_toy_model

    base = build_toy_model(tmp_path / "base", num_forks=0, hidden_size=32, num_layers=1, num_heads=2,
                           num_kv_heads=1, intermediate_size=64)
    assert forks.detect_num_forks(AutoTokenizer.from_pretrained(base)) == 0
    data = write_sets(tmp_path / "d.jsonl", [trace_set(f"q{k}", TEXTS[k % 2:k % 2 + 3]) for k in range(6)])
    out = tmp_path / "run"
    cfg = dict(model=str(base), trace_sets=str(data), out=str(out), num_forks=3, batch_size=2, max_steps=3, lr=1e-3,
               save_steps=2, logging_steps=1, quiet=True, match_prefix_tokens=5)
    summary = run_ssft(SSFTConfig(**cfg))
    assert summary["global_step"] == 3
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert forks.detect_num_forks(tok) == 3
    assert model.get_input_embeddings().weight.shape[0] >= len(tok)
    fmt = forks.ForkFormat.load(out)
    assert fmt is not None and fmt.num_forks == 3
    assert "<think2>" in forks.render_prompt(tok, "p", 2, fmt) and tok.chat_template
    assert forks.ForkFormat.load(out / "checkpoint-2").num_forks == 3
    assert not (out / "checkpoint-3").exists()  # the last step's extra checkpoint duplicates the final model
    log = read_matching_log(out / "matching.jsonl")
    assert len(log) == 3 * 2 and {e["step"] for e in log} == {0, 1, 2}
    for e in log:
        assert len(e["cost"]) == 3 and len(e["cost"][0]) == len(e["assignment"]) == 3
        assert sorted(e["assignment"]) == [1, 2, 3] and e["traces"] == ["s0", "s1", "s2"]
    # resume from checkpoint-2 to step 4: the log keeps steps 0, 1 and redoes 2, 3
    run_ssft(SSFTConfig(**{**cfg, "max_steps": 4, "resume": True}))
    steps = [e["step"] for e in read_matching_log(out / "matching.jsonl")]
    assert steps == sorted(steps) and set(steps) == {0, 1, 2, 3} and len(steps) == 8


def test_cli_end_to_end(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from forkctl.cli import app

    runner = CliRunner()
    base = tmp_path / "base"
    res = runner.invoke(app, ["synthetic-data", "--out", str(tmp_path / "train.jsonl"), "--questions", "12",
                              "--model-out", str(base), "--num-forks", "3", "--hidden-size", "32",
                              "--num-layers", "1"])
    assert res.exit_code == 0, res.output
    cfg = tmp_path / "ssft.yaml"
    cfg.write_text("matching: bipartite\nbatch-size: 4\nlr: 0.001\n")
    out = tmp_path / "run"
    res = runner.invoke(app, ["ssft", "--model", str(base), "--trace-sets", str(tmp_path / "train.jsonl"), "--out",
                              str(out), "--max-steps", "2", "--config", str(cfg), "--quiet"])
    assert res.exit_code == 0, res.output
    assert (out / "forkctl.json").exists() and (out / "matching.jsonl").exists()
    assert json.loads((out / "ssft_config.json").read_text())["config"]["batch_size"] == 4
    cfg.write_text("matchng: bipartite\n")
    res = runner.invoke(app, ["ssft", "--model", str(base), "--trace-sets", str(tmp_path / "train.jsonl"), "--config",
                              str(cfg)])
    assert res.exit_code == 2 and "unknown option 'matchng'" in res.output
    res = runner.invoke(app, ["ssft", "--model", str(base), "--trace-sets", str(tmp_path / "train.jsonl"), "--out",
                              str(tmp_path / "r2"), "--matching", "nope"])
    assert res.exit_code == 2 and "Invalid value for '--matching'" in res.output


def test_random_seeded_prompt_tokenisation_is_consistent(tmp_path: Path, tiny) -> None:
    """Every token's prompt is the <think1> prompt with one id replaced (what eval renders)."""
    _, _, tok, fmt, fork_ids = tiny
    rnd = random.Random(0)
    for _ in range(5):
        problem = " ".join(rnd.choice(["add", "x", "2", "$\\frac{1}{2}$", "?"]) for _ in range(8))
        items = items_for(tmp_path, tiny, [trace_set("q", TEXTS[:1], problem)])
        for i in range(4):
            prompt = list(items[0].prompt)
            prompt[items[0].fork_pos] = fork_ids[i]
            expect = tok(forks.render_prompt(tok, problem, i + 1, fmt), add_special_tokens=False)["input_ids"]
            assert prompt == expect


def test_default_fork_init_breaks_the_symmetry_so_first_assignments_are_not_index_order(tmp_path):
    """With identical forking-token rows (--fork-init mean) every row of a cost matrix is equal, so the first
    assignments are scipy's tie-break, not a property of the tokens; the default (mean-noise) gives each token its
    own row and its own costs."""
    from forkctl.toy import build_toy_model

    base = build_toy_model(tmp_path / "base", num_forks=0, hidden_size=32, num_layers=2, num_heads=2,
                           num_kv_heads=1, intermediate_size=64)
    sets = [trace_set(f"q{i}", [TEXTS[(i + k) % 4] for k in range(4)], problem=f"what is {i} + 3 then")
            for i in range(8)]
    firsts = {}
    for init in ("mean", "mean-noise"):
        model, tok, fmt, fork_ids = prepare_model(SSFTConfig(model=str(base), trace_sets="unused", num_forks=4,
                                                             fork_init=init))
        items, _ = load_items(write_sets(tmp_path / f"{init}.jsonl", sets), tok, fmt, fork_ids, "bipartite", 512)
        costs = [np.asarray(c) for c in cost_matrices(model, items, fork_ids, 8, tok.pad_token_id)]
        firsts[init] = ([assign(c) for c in costs], [float(np.ptp(c, axis=0).max()) for c in costs])
    assert max(firsts["mean"][1]) < 1e-5  # every token costs the same: the matching is a tie
    assert min(firsts["mean-noise"][1]) > 1e-4  # the tokens differ from the first step
    assert any(sigma != [0, 1, 2, 3] for sigma in firsts["mean-noise"][0])

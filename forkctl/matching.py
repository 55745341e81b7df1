"""SSFT's maths: cost matrices, the assignment of traces to forking tokens, and the batches of matched pairs.

Per question with traces r_1..r_M and forking tokens g_1..g_N (M <= N): ``C[i, j]`` = mean token NLL of the first
L tokens of r_j given (prompt, g_i), without gradient (:func:`cost_matrices`); sigma = the minimum-cost injective
map traces -> tokens (:func:`assign`, or another matching mode: :func:`assignment`); the loss is the ordinary
next-token loss over the matched pairs (:func:`pair_batch` builds them). Pure functions of their inputs (the model
is only read), each checked against a direct oracle in tests/test_ssft.py.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from forkctl.config import derive_seed
from forkctl.errors import UserError
from forkctl.models import model_device

MATCHING_MODES = ("bipartite", "random", "fixed", "mixed")
IGNORE = -100  # the label that carries no loss (transformers' ignore_index)


@dataclass
class QuestionItem:
    """One question, tokenised. Not a list/dict on purpose: the Trainer passes it to compute_loss untouched."""

    qid: str
    prompt: list[int]          # rendered with <think1>
    fork_pos: int              # index of the forking token in ``prompt``
    traces: list[list[int]]    # each trace's tokens followed by the end token
    labels: list[str] = field(default_factory=list)  # per trace: its "strategy" extra field, else its teacher


def assign(cost: Any) -> list[int]:
    """Minimum-cost injective map traces -> tokens for an N x M cost matrix (N >= M): sigma[j] = token of trace j."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    if m > n:
        raise UserError(f"{m} traces but only {n} forking tokens")
    rows, cols = linear_sum_assignment(cost)
    sigma = [-1] * m
    for r, c in zip(rows, cols):
        sigma[int(c)] = int(r)
    return sigma


def assignment(matching: str, num_forks: int, num_traces: int, cost: Any = None, seed: int = 0, step: int = 0,
               qid: str = "") -> list[int]:
    """sigma (the token index of each trace) under a matching mode; ``cost`` is needed by ``bipartite`` only.

    ``random`` draws a fresh injective map for each (seed, step, question), the same on every rerun."""
    if matching == "mixed":
        return [0] * num_traces
    if matching == "fixed":
        return list(range(num_traces))
    if matching == "random":
        return random.Random(derive_seed(seed, step, qid)).sample(range(num_forks), num_traces)
    return assign(cost)


def cost_matrix(model: Any, item: QuestionItem, fork_ids: list[int], prefix_tokens: int, pad_id: int,
                chunk: int = 0) -> Any:
    """C[i, j] = mean NLL of the first ``prefix_tokens`` tokens of trace j after (prompt, <think i+1>), no grad."""
    return cost_matrices(model, [item], fork_ids, prefix_tokens, pad_id, chunk)[0]


def cost_matrices(model: Any, items: list[QuestionItem], fork_ids: list[int], prefix_tokens: int, pad_id: int,
                  chunk: int = 0) -> list[Any]:
    """The N x M cost matrix of each question, all N*M prefixes of all questions in one no-grad forward pass.

    Sequences are left-padded so they all end at the same position, and the model keeps logits for the last
    L+1 positions only (L = the longest prefix). ``chunk`` > 0 splits the rows into forward passes of that many
    (a memory cap for long L and large vocabularies).
    """
    import torch

    n = len(fork_ids)
    rows, lens, plens, shapes = [], [], [], []
    for item in items:
        prefixes = [t[:prefix_tokens] for t in item.traces]
        shapes.append(len(prefixes))
        for i in range(n):
            prompt = list(item.prompt)
            prompt[item.fork_pos] = fork_ids[i]
            for p in prefixes:
                rows.append(prompt + p)
                lens.append(len(p))
                plens.append(len(prompt))
    lmax = max(lens)
    width = max(len(r) for r in rows)
    device = model_device(model)
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], device=device)
    tlen = torch.tensor(lens, device=device)
    total = torch.tensor([len(r) for r in rows], device=device)
    mask = (torch.arange(width, device=device)[None, :] >= (width - total)[:, None]).long()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    targets = ids[:, width - lmax:]
    valid = torch.arange(lmax, device=device)[None, :] >= (lmax - tlen)[:, None]
    costs = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            step = chunk or len(rows)
            starts = list(range(0, len(rows), step))
            for _ in range(_max_over_ranks(len(starts), device) - len(starts)):
                # FSDP / ZeRO-3 gather parameters in every forward: all ranks must run as many passes
                model(input_ids=ids[:1], attention_mask=mask[:1], position_ids=positions[:1], logits_to_keep=1,
                      use_cache=False)
            for s in starts:
                sl = slice(s, s + step)
                logits = model(input_ids=ids[sl], attention_mask=mask[sl], position_ids=positions[sl],
                               logits_to_keep=lmax + 1, use_cache=False).logits[:, :-1]
                if logits.numel() <= 2**26:
                    nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), targets[sl],
                                                            reduction="none")
                else:  # row by row: caps the float32 log-softmax memory for long prefixes and large vocabularies
                    nll = torch.stack([torch.nn.functional.cross_entropy(lg.float(), tg, reduction="none")
                                       for lg, tg in zip(logits, targets[sl])])
                costs.append((nll * valid[sl]).sum(-1) / valid[sl].sum(-1))
    finally:
        model.train(was_training)
    flat = torch.cat(costs).cpu().numpy()
    out, k = [], 0
    for m in shapes:
        out.append(flat[k:k + n * m].reshape(n, m))
        k += n * m
    return out


def _max_over_ranks(value: int, device: Any) -> int:
    """The largest ``value`` over the processes of a distributed run (``value`` itself otherwise)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    t = torch.tensor([value], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def pair_batch(items_pairs: list[tuple[QuestionItem, int, list[int]]], fork_ids: list[int], pad_id: int,
               fork_label: bool) -> dict[str, Any]:
    """Right-padded input_ids / attention_mask / labels for (question, token index, trace) pairs.

    Labels: the trace and its end token; with ``fork_label`` also the forking token and the suffix after it.
    """
    import torch

    seqs, labs = [], []
    for item, tok, trace in items_pairs:
        prompt = list(item.prompt)
        prompt[item.fork_pos] = fork_ids[tok]
        label_prompt = [IGNORE] * len(prompt)
        if fork_label:
            label_prompt[item.fork_pos:] = prompt[item.fork_pos:]
        seqs.append(prompt + trace)
        labs.append(label_prompt + trace)
    width = max(len(s) for s in seqs)
    input_ids = torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs])
    labels = torch.tensor([lab + [IGNORE] * (width - len(lab)) for lab in labs])
    attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}

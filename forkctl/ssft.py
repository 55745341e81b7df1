"""``forkctl ssft``: set-supervised fine-tuning with bipartite matching (arXiv 2510.05132).

Per question x with traces r_1..r_M and forking tokens g_1..g_N (M <= N), at every step:

1. cost matrix, no gradient: ``C[i, j]`` = mean token NLL of the first L (``--match-prefix-tokens``) tokens of
   r_j given (prompt(x), g_i); all N*M prefixes (of every question of the micro-batch) in one batched forward pass
   (left-padded, logits kept only for the last L+1 positions);
2. assignment: ``scipy.optimize.linear_sum_assignment(C)`` (rectangular: each trace gets a distinct token, N-M
   tokens get nothing from this question);
3. loss: the ordinary next-token loss of each full trace r_j given (prompt(x), g_sigma(j)) over the M matched
   pairs (mean over labelled tokens of the micro-batch), labels on the response only: the trace and the end token,
   plus, with ``fork_label`` (default on), the forking token and the suffix rendered after it, so the model can
   later choose its own token (``eval --fork policy``, gfpo). The chat prompt before the token carries no loss.

Matching modes: ``bipartite`` (the above), ``random`` (a fresh random injective assignment per question and step),
``fixed`` (trace j -> token j, in file order), ``mixed`` (plain multi-trace SFT: every trace its own example with
the one shared token ``<think1>``).

It is a :class:`transformers.Trainer` subclass (batches are questions with their trace sets), so checkpoints,
resume, ``report_to`` and ``accelerate launch`` (DDP, FSDP, DeepSpeed) are the Trainer's. Outputs in ``--out``: the
final checkpoint (model, tokenizer with forking tokens and chat template, ``forkctl.json``), ``checkpoint-*``
folders, ``matching.jsonl`` (per step and question: assignment and cost matrix; ``matching.rank{k}.jsonl`` for
other ranks), ``ssft_config.json`` and ``ssft_summary.json``.

Bad data is skipped and counted by default (a summary line at start, ``data`` in ``ssft_summary.json``); with
``strict=True`` the first bad record stops the run with its ``file:line``. What counts as bad: an empty trace (the
trace is dropped), a trace whose prompt + trace + end token exceeds ``max_seq_len`` (the trace is dropped), more
traces than forking tokens in bipartite/random/fixed mode (the question is skipped: which traces to keep is the
data's business), and a question left with no trace (skipped). Malformed JSON or a missing field always stops.
"""

from __future__ import annotations

from forkctl.errors import UserError
import hashlib
import os
import random
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from forkctl import forks
from forkctl.config import SSFTConfig
from forkctl.records import JsonlAppender, TraceSet, iter_json_lines, keep_lines, read_json_lines, write_json

MATCHING_MODES = ("bipartite", "random", "fixed", "mixed")
IGNORE = -100


# --------------------------------------------------------------------------------------------------
# Data: trace sets -> token ids, with bad records skipped and counted (or stopping, with strict)


@dataclass
class QuestionItem:
    """One question, tokenised. Not a list/dict on purpose: the Trainer passes it to compute_loss untouched."""

    qid: str
    prompt: list[int]          # rendered with <think1>
    fork_pos: int              # index of the forking token in ``prompt``
    traces: list[list[int]]    # each trace's tokens followed by the end token
    labels: list[str] = field(default_factory=list)  # per trace: its "strategy" extra field, else its teacher


@dataclass
class DataReport:
    questions_read: int = 0
    questions_used: int = 0
    traces_used: int = 0
    empty_traces: int = 0
    traces_too_long: int = 0
    questions_too_many_traces: int = 0
    questions_without_traces: int = 0
    examples: list[str] = field(default_factory=list)

    def skipped(self, kind: str, where: str, message: str, strict: bool) -> None:
        if strict:
            raise UserError(f"{where}: {message} (bad data stops the run with --strict; without it such records "
                             f"are skipped and counted)")
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.examples) < 5:
            self.examples.append(f"{where}: {message}")

    @property
    def any_skipped(self) -> bool:
        return bool(self.empty_traces or self.traces_too_long or self.questions_too_many_traces
                    or self.questions_without_traces)

    def summary(self) -> str:
        return (f"{self.questions_used}/{self.questions_read} questions, {self.traces_used} traces used; skipped: "
                f"{self.empty_traces} empty traces, {self.traces_too_long} traces over --max-seq-len, "
                f"{self.questions_too_many_traces} questions with more traces than forking tokens, "
                f"{self.questions_without_traces} questions left without traces")


def prompt_ids(tokenizer: Any, problem: str, fmt: forks.ForkFormat, fork_ids: list[int],
               system: str | None = None) -> tuple[list[int], int]:
    """Token ids of ``render_prompt(problem, fork=1)`` and the index of the forking token in them.

    Prompts for other tokens are the same ids with that one id replaced; checked here for every token, so the
    model trains on exactly what ``eval`` renders.
    """
    ids = tokenizer(forks.render_prompt(tokenizer, problem, 1, fmt, system), add_special_tokens=False)["input_ids"]
    positions = [k for k, t in enumerate(ids) if t == fork_ids[0]]
    if len(positions) != 1:
        raise UserError(f"the rendered prompt must contain <think1> exactly once as one token, found "
                         f"{len(positions)} (is it a special token of the tokenizer?)")
    pos = positions[0]
    for i in range(2, len(fork_ids) + 1):
        other = tokenizer(forks.render_prompt(tokenizer, problem, i, fmt, system),
                          add_special_tokens=False)["input_ids"]
        if other != ids[:pos] + [fork_ids[i - 1]] + ids[pos + 1:]:
            raise UserError(f"prompts for <think1> and <think{i}> tokenise differently beyond the token itself; "
                             f"check --fork-prefix/--fork-suffix")
    return ids, pos


def load_items(path: str | Path, tokenizer: Any, fmt: forks.ForkFormat, fork_ids: list[int], matching: str,
               max_seq_len: int, strict: bool = False, system: str | None = None
               ) -> tuple[list[QuestionItem], DataReport]:
    """Read a trace-set JSONL and tokenise it. See the module docstring for what is skipped."""
    report = DataReport()
    items: list[QuestionItem] = []
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError("the tokenizer has no eos token: traces need an end token to learn to stop")
    checked_prompt = False
    if Path(path).suffix == ".parquet":
        from forkctl.records import _read_parquet

        rows = ((f"{path}:row {i + 1}", r) for i, r in enumerate(_read_parquet(Path(path))))
    else:
        rows = iter_json_lines(path)
    for where, obj in rows:
        report.questions_read += 1
        raw_traces = obj.get("traces") if isinstance(obj, dict) else None
        if isinstance(raw_traces, list):  # empty traces: drop them here rather than let the schema stop the run
            kept = []
            for k, t in enumerate(raw_traces):
                if isinstance(t, dict) and isinstance(t.get("text"), str) and not t["text"].strip():
                    report.skipped("empty_traces", f"{where}: traces[{k}]", "empty trace", strict)
                else:
                    kept.append(t)
            obj = {**obj, "traces": kept}
        ts = TraceSet.from_dict(obj, where)
        if not checked_prompt:
            ids, pos = prompt_ids(tokenizer, ts.problem, fmt, fork_ids, system)
            checked_prompt = True
        else:
            ids = tokenizer(forks.render_prompt(tokenizer, ts.problem, 1, fmt, system),
                            add_special_tokens=False)["input_ids"]
            pos = ids.index(fork_ids[0])
        traces, labels = [], []
        for k, t in enumerate(ts.traces):
            tok = tokenizer(t.text, add_special_tokens=False)["input_ids"]
            if not tok:
                report.skipped("empty_traces", f"{where}: traces[{k}]", "trace has no tokens", strict)
                continue
            if len(ids) + len(tok) + 1 > max_seq_len:
                report.skipped("traces_too_long", f"{where}: traces[{k}]",
                               f"prompt + trace + end token = {len(ids) + len(tok) + 1} tokens > --max-seq-len "
                               f"{max_seq_len}", strict)
                continue
            traces.append(tok + [eos])
            labels.append(str(t.extra.get("strategy", t.teacher)))
        if not traces:
            report.skipped("questions_without_traces", where, "no usable trace", strict)
            continue
        if matching != "mixed" and len(traces) > fmt.num_forks:
            report.skipped("questions_too_many_traces", where,
                           f"{len(traces)} traces but only {fmt.num_forks} forking tokens (each trace needs its own "
                           f"token; raise --num-forks or drop traces)", strict)
            continue
        items.append(QuestionItem(ts.id, ids, pos, traces, labels))
        report.questions_used += 1
        report.traces_used += len(traces)
    if not items:
        raise UserError(f"{path}: no usable question ({report.summary()})")
    return items, report


# --------------------------------------------------------------------------------------------------
# Matching


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
    device = _model_device(model)
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


def _model_device(model: Any) -> Any:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        import torch

        return torch.device("cpu")


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


def _collate(items: list[QuestionItem]) -> dict[str, Any]:
    return {"questions": items}


# --------------------------------------------------------------------------------------------------
# The trainer


def _make_trainer_class():
    from transformers import Trainer

    class SSFTTrainer(Trainer):
        """A Trainer whose batches are questions with trace sets; see the module docstring for the loss."""

        def __init__(self, *args: Any, fork_ids: list[int], matching: str = "bipartite",
                     match_prefix_tokens: int = 1000, match_chunk: int = 0, fork_label: bool = True,
                     matching_log: str | Path | None = None, match_seed: int = 0, **kwargs: Any) -> None:
            kwargs.setdefault("data_collator", _collate)
            super().__init__(*args, **kwargs)
            self.fork_ids, self.matching = list(fork_ids), matching
            self.match_prefix_tokens, self.match_chunk, self.fork_label = match_prefix_tokens, match_chunk, fork_label
            self.match_seed = match_seed
            self.model_accepts_loss_kwargs = False  # the loss is a per-micro-batch token mean; Trainer scales for GA
            tok = self.processing_class
            self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
            self._log_path = Path(matching_log) if matching_log else None
            self._log: JsonlAppender | None = None
            self._stats = {"matched_cost": 0.0, "questions": 0.0, "switched": 0.0, "seen_before": 0.0}
            self._last: dict[str, list[int]] = {}

        # -- matching ------------------------------------------------------------------------------
        def match(self, item: QuestionItem, cost: Any = None) -> list[int]:
            """sigma: the token index of each trace (``cost``: the question's cost matrix, bipartite only)."""
            n, m = len(self.fork_ids), len(item.traces)
            if self.matching == "mixed":
                return [0] * m
            if self.matching == "fixed":
                return list(range(m))
            if self.matching == "random":
                digest = hashlib.sha256(f"{self.match_seed}|{self.state.global_step}|{item.qid}".encode()).digest()
                return random.Random(digest).sample(range(n), m)
            return assign(cost)

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            items: list[QuestionItem] = inputs["questions"]
            pairs = []
            costs = cost_matrices(model, items, self.fork_ids, self.match_prefix_tokens, self.pad_id,
                                  self.match_chunk) if self.matching == "bipartite" else [None] * len(items)
            for item, cost in zip(items, costs):
                sigma = self.match(item, cost)
                self._record(item, sigma, cost)
                pairs.extend((item, tok, trace) for tok, trace in zip(sigma, item.traces))
            batch = pair_batch(pairs, self.fork_ids, self.pad_id, self.fork_label)
            device = _model_device(model)
            batch = {k: v.to(device) for k, v in batch.items()}
            outputs = model(**batch, use_cache=False)
            return (outputs.loss, outputs) if return_outputs else outputs.loss

        def _record(self, item: QuestionItem, sigma: list[int], cost: Any) -> None:
            st = self._stats
            st["questions"] += 1
            if cost is not None:
                st["matched_cost"] += float(sum(cost[t, j] for j, t in enumerate(sigma)) / len(sigma))
            if item.qid in self._last:
                st["seen_before"] += 1
                st["switched"] += float(self._last[item.qid] != sigma)
            self._last[item.qid] = sigma
            if self._log_path is None:
                return
            if self._log is None:
                self._log = JsonlAppender(self._log_path)
            self._log.write({"step": self.state.global_step, "epoch": round(float(self.state.epoch or 0.0), 4),
                             "question_id": item.qid, "matching": self.matching,
                             "assignment": [t + 1 for t in sigma], "traces": item.labels,
                             "cost": None if cost is None else [[round(float(c), 4) for c in row] for row in cost]})

        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            st = self._stats
            if st["questions"] and "loss" in logs:
                if self.matching == "bipartite":
                    logs["matched_cost"] = round(st["matched_cost"] / st["questions"], 4)
                if st["seen_before"]:
                    logs["assignment_switch_rate"] = round(st["switched"] / st["seen_before"], 4)
                for k in st:
                    st[k] = 0.0
            super().log(logs, start_time)

        def close_log(self) -> None:
            if self._log is not None:
                self._log.close()
                self._log = None

    return SSFTTrainer


def __getattr__(name: str) -> Any:  # lazy: importing forkctl.ssft must not import transformers
    if name == "SSFTTrainer":
        cls = _make_trainer_class()
        globals()["SSFTTrainer"] = cls
        return cls
    raise AttributeError(name)


# --------------------------------------------------------------------------------------------------
# The stage


def _fork_format_callback(fmt: forks.ForkFormat):
    from transformers import TrainerCallback

    class ForkFormatCallback(TrainerCallback):
        """Put forkctl.json in every checkpoint folder, so each one is usable by eval/gfpo as is."""

        def on_save(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            if state.is_world_process_zero:
                ckpt = Path(args.output_dir, f"checkpoint-{state.global_step}")
                if ckpt.is_dir():
                    fmt.save(ckpt)
            return control

    return ForkFormatCallback()


def prepare_model(cfg: SSFTConfig) -> tuple[Any, Any, forks.ForkFormat, list[int]]:
    """Load model + tokenizer, add the forking tokens if missing, give the tokenizer a chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32)
    forks.ensure_chat_template(tokenizer)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    fmt = forks.resolve_fork_format(cfg.model, tokenizer, cfg.num_forks, cfg.fork_prefix, cfg.fork_suffix)
    if fmt.num_forks < 1:
        raise UserError(f"{cfg.model} has no forking tokens: set --num-forks N to add <think1>..<thinkN>")
    fork_ids = forks.add_fork_tokens(tokenizer, model, fmt.num_forks, init=cfg.fork_init)
    return model, tokenizer, fmt, fork_ids


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def run_ssft(cfg: SSFTConfig) -> dict[str, Any]:
    """Train; return the summary written to ``ssft_summary.json``."""
    cfg.validate()
    import torch
    from transformers import TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer, fmt, fork_ids = prepare_model(cfg)
    items, report = load_items(cfg.trace_sets, tokenizer, fmt, fork_ids, cfg.matching, cfg.max_seq_len, cfg.strict,
                               cfg.system_prompt)
    if not cfg.quiet and _rank() == 0:
        print(f"ssft data: {report.summary()}", flush=True)
        for ex in report.examples:
            print(f"  skipped {ex}", flush=True)

    world = int(os.environ.get("WORLD_SIZE", "1"))
    checkpointing = {}
    if cfg.gradient_checkpointing:  # renamed activation_checkpointing in recent transformers
        names = {f.name for f in fields(TrainingArguments)}
        checkpointing = {"activation_checkpointing" if "activation_checkpointing" in names
                         else "gradient_checkpointing": True}
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=cfg.batch_size // (cfg.grad_accum * world),
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps else -1, lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm, bf16=cfg.bf16,
        seed=cfg.seed, data_seed=cfg.seed, dataloader_pin_memory=torch.cuda.is_available(),
        logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, report_to=[] if cfg.report_to == "none" else cfg.report_to.split(","),
        remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=cfg.quiet, **checkpointing,
    )
    log_name = "matching.jsonl" if _rank() == 0 else f"matching.rank{_rank()}.jsonl"
    resume_from = None
    if cfg.resume:
        resume_from = get_last_checkpoint(str(out))
        if resume_from is None:
            raise UserError(f"--resume: no checkpoint-* folder in {out}")
        _truncate_log(out / log_name, _checkpoint_step(resume_from))
    elif (out / log_name).exists():
        (out / log_name).unlink()  # a fresh run: start a fresh log

    trainer_cls = _make_trainer_class()
    trainer = trainer_cls(model=model, args=args, train_dataset=items, processing_class=tokenizer,
                          fork_ids=fork_ids, matching=cfg.matching, match_prefix_tokens=cfg.match_prefix_tokens,
                          match_chunk=cfg.match_chunk, fork_label=cfg.fork_label, matching_log=out / log_name,
                          match_seed=cfg.seed, callbacks=[_fork_format_callback(fmt)])
    if trainer.is_world_process_zero():
        write_json(out / "ssft_config.json", asdict(cfg))
    try:
        result = trainer.train(resume_from_checkpoint=resume_from)
    finally:
        trainer.close_log()
    trainer.save_model(str(out))
    summary = {"train_loss": result.training_loss, "global_step": result.global_step,
               "metrics": result.metrics, "data": {k: v for k, v in asdict(report).items()},
               "num_forks": fmt.num_forks, "matching": cfg.matching}
    if trainer.is_world_process_zero():
        fmt.save(out)
        write_json(out / "ssft_summary.json", summary)
    return summary


def _checkpoint_step(path: str | Path) -> int:
    try:
        return int(Path(path).name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return 0


def _truncate_log(path: Path, step: int) -> None:
    """Drop matching-log lines of steps at or after the checkpoint resumed from (they will be redone)."""
    keep_lines(path, lambda obj: isinstance(obj, dict) and obj.get("step", 0) < step)


def read_matching_log(path: str | Path) -> list[dict[str, Any]]:
    """The matching log's entries (for inspect and the experiment)."""
    return read_json_lines(path)


__all__ = ["SSFTConfig", "QuestionItem", "DataReport", "assign", "cost_matrix", "cost_matrices", "pair_batch",
           "load_items", "prompt_ids", "prepare_model", "run_ssft", "read_matching_log", "MATCHING_MODES"]

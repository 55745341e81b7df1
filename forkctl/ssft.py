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

This module is the stage (data loading, the Trainer, the runner); the maths is :mod:`forkctl.matching`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback

from forkctl import console, forks
from forkctl.config import SSFTConfig, check_fingerprint, file_identity, write_run_config
from forkctl.errors import UserError
from forkctl.matching import (IGNORE, MATCHING_MODES, QuestionItem, assign, assignment, cost_matrices, cost_matrix,
                              pair_batch)
from forkctl.models import load_for_training, model_device
from forkctl.records import JsonlAppender, TraceSet, iter_json_lines, keep_lines, read_json_lines, write_json


# --------------------------------------------------------------------------------------------------
# Data: trace sets -> token ids, with bad records skipped and counted (or stopping, with strict)


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
# The trainer (the maths it calls — cost matrices, assignment, pair batches — is forkctl.matching)


def _collate(items: list[QuestionItem]) -> dict[str, Any]:
    """Batches stay lists of questions: compute_loss matches their traces before building token batches."""
    return {"questions": items}


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
        return assignment(self.matching, len(self.fork_ids), len(item.traces), cost, self.match_seed,
                          self.state.global_step, item.qid)

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
        device = model_device(model)
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


# --------------------------------------------------------------------------------------------------
# The stage


class ForkFormatCallback(TrainerCallback):
    """Put forkctl.json in every checkpoint folder, so each one is usable by eval/gfpo as is."""

    def __init__(self, fmt: forks.ForkFormat) -> None:
        self.fmt = fmt

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        if state.is_world_process_zero:
            ckpt = Path(args.output_dir, f"checkpoint-{state.global_step}")
            if ckpt.is_dir():
                self.fmt.save(ckpt)
        return control


def prepare_model(cfg: SSFTConfig) -> tuple[Any, Any, forks.ForkFormat, list[int]]:
    """Load model (fp32 master weights) + tokenizer, add the forking tokens if missing, give the tokenizer a chat
    template. bf16 is the Trainer's autocast (``TrainingArguments(bf16=...)``), never the weights' dtype."""
    model, tokenizer, _ = load_for_training(cfg.model)
    forks.ensure_chat_template(tokenizer)
    fmt = forks.resolve_fork_format(cfg.model, tokenizer, cfg.num_forks, cfg.fork_prefix, cfg.fork_suffix)
    if fmt.num_forks < 1:
        raise UserError(f"{cfg.model} has no forking tokens: set --num-forks N to add <think1>..<thinkN>")
    fork_ids = forks.add_fork_tokens(tokenizer, model, fmt.num_forks, init=cfg.fork_init, seed=cfg.seed)
    return model, tokenizer, fmt, fork_ids


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


CONFIG_FILE = "ssft_config.json"
SUMMARY_FILE = "ssft_summary.json"
# Settings that do not change what is trained: a resume may extend the run (steps, epochs) or log differently.
NOT_FINGERPRINTED = ("out", "resume", "quiet", "overwrite", "max_steps", "epochs", "save_steps", "save_total_limit",
                     "keep_final_checkpoint", "logging_steps", "report_to")


def run_ssft(cfg: SSFTConfig) -> dict[str, Any]:
    """Train; return the summary written to ``ssft_summary.json``. The final model is ``--out`` itself."""
    cfg.validate()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log_name = "matching.jsonl" if _rank() == 0 else f"matching.rank{_rank()}.jsonl"
    resume_from = _prepare_out(cfg, out, log_name)
    model, tokenizer, fmt, fork_ids = prepare_model(cfg)
    items, report = load_items(cfg.trace_sets, tokenizer, fmt, fork_ids, cfg.matching, cfg.max_seq_len, cfg.strict,
                               cfg.system_prompt)
    if not cfg.quiet and _rank() == 0:
        console.note(f"ssft data: {report.summary()}")
        for ex in report.examples:
            console.note(f"  skipped {ex}")
    trainer = SSFTTrainer(model=model, args=training_args(cfg, out), train_dataset=items, processing_class=tokenizer,
                          fork_ids=fork_ids, matching=cfg.matching, match_prefix_tokens=cfg.match_prefix_tokens,
                          match_chunk=cfg.match_chunk, fork_label=cfg.fork_label, matching_log=out / log_name,
                          match_seed=cfg.seed, callbacks=[ForkFormatCallback(fmt)])
    if trainer.is_world_process_zero():
        write_run_config(out / CONFIG_FILE, "ssft", cfg, fingerprint(cfg), {"fork_format": asdict(fmt)})
    try:
        result = trainer.train(resume_from_checkpoint=resume_from)
    finally:
        trainer.close_log()
    trainer.save_model(str(out))
    if trainer.is_world_process_zero() and not cfg.keep_final_checkpoint:
        _drop_final_checkpoint(out, result.global_step, cfg.save_steps)
    summary = {"train_loss": result.training_loss, "global_step": result.global_step,
               "metrics": result.metrics, "data": {k: v for k, v in asdict(report).items()},
               "num_forks": fmt.num_forks, "matching": cfg.matching}
    if trainer.is_world_process_zero():
        fmt.save(out)
        write_json(out / SUMMARY_FILE, summary)
    return summary


def _drop_final_checkpoint(out: Path, step: int, save_steps: int) -> None:
    """The Trainer also checkpoints the last step; off the --save-steps grid that folder only duplicates the final
    model (plus optimizer state), so it goes unless --keep-final-checkpoint."""
    final = out / f"checkpoint-{step}"
    if step % save_steps and final.is_dir():
        shutil.rmtree(final, ignore_errors=True)


def fingerprint(cfg: SSFTConfig) -> dict[str, Any]:
    """What a run's results depend on: its settings (not its length) and the identity of its inputs."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in NOT_FINGERPRINTED}
    return {**settings, "model_identity": file_identity(cfg.model),
            "trace_sets_identity": file_identity(cfg.trace_sets)}


def _prepare_out(cfg: SSFTConfig, out: Path, log_name: str) -> str | None:
    """Refuse to mix runs in ``out`` (or clear it with --overwrite); return the checkpoint to resume from."""
    same = check_fingerprint(out / CONFIG_FILE, fingerprint(cfg), output=str(out), overwrite=cfg.overwrite)
    if cfg.overwrite and not same:
        if _rank() == 0:
            _clear(out)
        return None
    if cfg.resume:
        resume_from = forks.last_complete_checkpoint(out, drop_incomplete=_rank() == 0)
        if resume_from is None:
            raise UserError(f"--resume: no complete checkpoint-* folder in {out}")
        _truncate_log(out / log_name, _checkpoint_step(resume_from))
        return resume_from
    if (out / log_name).exists():
        (out / log_name).unlink()  # a fresh run: start a fresh log
    return None


def _clear(out: Path) -> None:
    """--overwrite: remove what an earlier run left that a later --resume would pick up or a reader would mix."""
    for ckpt in out.glob("checkpoint-*"):
        shutil.rmtree(ckpt, ignore_errors=True)
    for name in ("matching*.jsonl", CONFIG_FILE, SUMMARY_FILE):
        for path in out.glob(name):
            path.unlink(missing_ok=True)


def training_args(cfg: SSFTConfig, out: Path) -> Any:
    """The Trainer's arguments: batch split over processes and accumulation, bf16 autocast, checkpoints."""
    import torch
    from transformers import TrainingArguments

    world = int(os.environ.get("WORLD_SIZE", "1"))
    checkpointing = {}
    if cfg.gradient_checkpointing:  # renamed activation_checkpointing in recent transformers
        names = {f.name for f in fields(TrainingArguments)}
        checkpointing = {"activation_checkpointing" if "activation_checkpointing" in names
                         else "gradient_checkpointing": True}
    return TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=cfg.batch_size // (cfg.grad_accum * world),
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.lr, num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps else -1, lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm, bf16=cfg.bf16,
        seed=cfg.seed, data_seed=cfg.seed, dataloader_pin_memory=torch.cuda.is_available(),
        logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, report_to=[] if cfg.report_to == "none" else cfg.report_to.split(","),
        remove_unused_columns=False, dataloader_num_workers=0, disable_tqdm=cfg.quiet, **checkpointing,
    )


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


__all__ = ["SSFTConfig", "SSFTTrainer", "QuestionItem", "DataReport", "IGNORE", "assign", "cost_matrix",
           "cost_matrices", "pair_batch", "load_items", "prompt_ids", "prepare_model", "run_ssft", "read_matching_log",
           "MATCHING_MODES"]

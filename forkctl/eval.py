"""``forkctl eval``: sample a model on a benchmark with forking tokens fixed, cycled or chosen; score; report.

Outputs in ``--out DIR``: ``samples.jsonl`` (one scored sample per line, appended as batches finish, so a rerun
generates only what is missing) and ``metrics.json`` (``config`` to reproduce the run, ``metrics``).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from forkctl import forks
from forkctl.tasks import Task, get_task
from forkctl.config import EvalConfig, package_versions
from forkctl.errors import UserError
from forkctl.metrics import Vote, summarize
from forkctl.records import JsonlAppender, Question, RecordError, Sample, iter_json_lines, repair_tail, \
    write_json, write_records

# Options that change what is generated: resuming into an out dir made with other values is refused.
GENERATION_KEYS = ("model", "task", "fork", "num_forks", "fork_prefix", "fork_suffix", "temperature", "top_p",
                   "max_new_tokens", "seed", "system_prompt", "limit")


@dataclass
class EvalResult:
    metrics: dict[str, Any]
    config: dict[str, Any]
    samples_path: Path
    metrics_path: Path


def run_eval(cfg: EvalConfig) -> EvalResult:
    cfg.validate()
    progress = not cfg.quiet
    bench = get_task(cfg.task)
    questions = bench.load()
    if cfg.limit is not None:
        questions = questions[: cfg.limit]
    if not questions:
        raise UserError(f"task {cfg.task} has no questions")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    samples_path = out / "samples.jsonl"
    fork_mode: str | int
    if cfg.samples:
        samples = _read_samples_for(Path(cfg.samples), questions)
        fork_mode = cfg.fork
        native = _looks_native(samples) if cfg.fork == "none" else cfg.fork == "all"
    else:
        _check_resume_compatible(out, cfg)
        fork_mode, native = _generate_missing(cfg, bench, questions, samples_path, progress)
        samples = _read_samples_for(samples_path, questions)
    samples, metrics = score_and_summarize(bench, questions, samples, cfg.k, native)
    write_records(samples_path, samples)
    config = {**asdict(cfg),
              "fork_mode": fork_mode if isinstance(fork_mode, str) else f"think{fork_mode}",
              "benchmark_source": bench.describe(), "versions": package_versions()}
    metrics_path = out / "metrics.json"
    write_json(metrics_path, {"config": config, "metrics": metrics})
    return EvalResult(metrics, config, samples_path, metrics_path)


# --------------------------------------------------------------------------------------------------
# Generation


def _generate_missing(cfg: EvalConfig, bench: Task, questions: list[Question], samples_path: Path,
                      progress: bool) -> tuple[str | int, bool]:
    from forkctl.generation import SamplingConfig, load_backend

    done = _existing_keys(samples_path)
    backend = load_backend(cfg.backend, cfg.model or "", **cfg.backend_options())
    try:
        fmt = forks.resolve_fork_format(cfg.model if backend.name != "openai" else cfg.tokenizer, backend.tokenizer,
                                        cfg.num_forks, cfg.fork_prefix, cfg.fork_suffix)
        mode = forks.parse_fork_spec(cfg.fork, fmt.num_forks)
        plan = forks.forks_for_samples(mode, cfg.n, fmt.num_forks)
        todo = [(q, j) for q in questions for j in range(cfg.n) if (q.id, j) not in done]
        if not todo:
            return mode, mode == "all"
        fork_ids = forks.fork_token_ids(backend.tokenizer, fmt.num_forks) if fmt.num_forks else []
        if mode == "policy" and not fork_ids:
            raise UserError("--fork policy needs a model with forking tokens")
        # Forking tokens are control tokens: never generated inside a response.
        sampling = SamplingConfig(cfg.temperature, cfg.top_p, cfg.max_new_tokens, cfg.seed, fork_ids)
        # Enough questions per call to fill the backend's batches.
        per_call = max(1, (cfg.generate_batch_size * 2) // cfg.n) if backend.name == "transformers" else max(1, 256 // cfg.n)
        by_question: dict[str, list[int]] = defaultdict(list)
        for q, j in todo:
            by_question[q.id].append(j)
        pending = [q for q in questions if q.id in by_question]
        with _progress(progress, len(todo)) as bar, JsonlAppender(samples_path) as sink:
            for start in range(0, len(pending), per_call):
                chunk = pending[start:start + per_call]
                plans = _policy_choices(backend, chunk, by_question, fmt, fork_ids, cfg) if mode == "policy" \
                    else {q.id: {j: plan[j] for j in by_question[q.id]} for q in chunk}
                requests, slots = _requests_for(chunk, plans, fmt, backend.tokenizer, cfg)
                records = _to_samples(bench, chunk, slots, backend.generate(requests, sampling))
                sink.write_many(records)
                bar(len(records))
        return mode, mode == "all"
    finally:
        backend.close()


def _policy_choices(backend: Any, chunk: list[Question], by_question: dict[str, list[int]], fmt: forks.ForkFormat,
                    fork_ids: list[int], cfg: EvalConfig) -> dict[str, dict[int, int]]:
    """The model's own choice of forking token for each missing sample: drawn from π(·|x) over the N tokens
    (the policy gfpo trains), sharpened by --temperature like any sampled token, seeded per sample."""
    import math
    import random

    prompts = [forks.policy_prompt(backend.tokenizer, q.problem, fmt, cfg.system_prompt) for q in chunk]
    choices: dict[str, dict[int, int]] = {}
    for q, logp in zip(chunk, backend.fork_logprobs(prompts, fork_ids)):
        t = max(cfg.temperature, 1e-6)
        weights = [math.exp((lp - max(logp)) / t) for lp in logp]
        choices[q.id] = {j: random.Random(_request_seed(cfg.seed, q.id, "policy", j)).choices(
            range(1, len(weights) + 1), weights)[0] for j in by_question[q.id]}
    return choices


def _requests_for(chunk: list[Question], plans: dict[str, dict[int, int | None]], fmt: forks.ForkFormat,
                  tokenizer: Any, cfg: EvalConfig):
    """One request per (question, forking token) with n = the missing samples that use that token."""
    from forkctl.generation import Request

    requests, slots = [], []
    for q in chunk:
        groups: dict[int | None, list[int]] = defaultdict(list)
        for j, fork in sorted(plans[q.id].items()):
            groups[fork].append(j)
        for fork, idxs in groups.items():
            prompt = forks.render_prompt(tokenizer, q.problem, fork, fmt, cfg.system_prompt)
            requests.append(Request(prompt=prompt, n=len(idxs), seed=_request_seed(cfg.seed, q.id, fork, idxs[0])))
            slots.append((q, idxs, fork))
    return requests, slots


def _to_samples(bench: Task, chunk: list[Question], slots, completions) -> list[Sample]:
    got: dict[str, list[tuple[int, int | None, Any]]] = defaultdict(list)
    for (q, idxs, fork), comps in zip(slots, completions):
        got[q.id].extend((j, fork, comp) for j, comp in zip(idxs, comps))
    rows = {qid: sorted(v, key=lambda x: x[0]) for qid, v in got.items()}
    scored = bench.score([(q, [comp.text for *_, comp in rows[q.id]]) for q in chunk])
    records = []
    for q, judged in zip(chunk, scored):
        for (j, fork, comp), s in zip(rows[q.id], judged):
            records.append(Sample(question_id=q.id, sample=j, fork=fork, text=comp.text, answer=s.answer,
                                  correct=s.correct, num_tokens=comp.num_tokens, finish_reason=comp.finish_reason,
                                  extra={"prompt_tokens": comp.prompt_tokens, **s.extra}))
    return records


def _request_seed(seed: int, qid: str, fork: int | str | None, first: int) -> int:
    digest = hashlib.sha256(f"{seed}|{qid}|{fork}|{first}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class _progress:
    """A rich progress bar over samples (silent when ``enabled`` is false)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total

    def __enter__(self):  # noqa: ANN204
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn

        self._p = Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                           TimeRemainingColumn())
        self._p.__enter__()
        task = self._p.add_task("samples", total=self.total)
        return lambda n: self._p.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._p.__exit__(*exc)


# --------------------------------------------------------------------------------------------------
# Reading, resuming, scoring


def _existing_keys(path: Path) -> set[tuple[str, int]]:
    if not path.exists():
        return set()
    repair_tail(path)
    return {Sample.from_dict(obj, where).key for where, obj in iter_json_lines(path)}


def _check_resume_compatible(out: Path, cfg: EvalConfig) -> None:
    metrics_path = out / "metrics.json"
    if not (out / "samples.jsonl").exists() or not metrics_path.exists():
        return
    try:
        old = json.loads(metrics_path.read_text())["config"]
    except (json.JSONDecodeError, KeyError):
        return
    for key in GENERATION_KEYS:
        if key in old and old[key] != getattr(cfg, key):
            raise UserError(f"{out} holds samples generated with {key}={old[key]!r}, not {getattr(cfg, key)!r}; "
                             f"use another --out (or the same settings to resume)")


def _read_samples_for(path: Path, questions: list[Question]) -> list[Sample]:
    """Samples of a file that belong to ``questions``; an unknown question or a duplicate is an error."""
    known = {q.id for q in questions}
    seen: set[tuple[str, int]] = set()
    samples = []
    for where, obj in iter_json_lines(path):
        s = Sample.from_dict(obj, where)
        if s.question_id not in known:
            raise RecordError(where, "question_id", f"{s.question_id!r} is not a question of this benchmark")
        if s.key in seen:
            raise RecordError(where, "sample", f"duplicate sample {s.sample} of question {s.question_id!r}")
        seen.add(s.key)
        samples.append(s)
    if not samples:
        raise RecordError(str(path), None, "no samples")
    return samples


def _looks_native(samples: list[Sample]) -> bool:
    forks_seen = {s.fork for s in samples}
    return None not in forks_seen and len(forks_seen) > 1


def score_and_summarize(bench: Task, questions: list[Question], samples: list[Sample], ks: list[int],
                        native: bool) -> tuple[list[Sample], dict[str, Any]]:
    """Re-extract and re-judge every sample from its text, then compute the metrics."""
    by_q: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_q[s.question_id].append(s)
    qs = [q for q in questions if q.id in by_q]
    for q in qs:
        by_q[q.id].sort(key=lambda s: s.sample)
    scored = bench.score([(q, [s.text for s in by_q[q.id]]) for q in qs])
    table: dict[str, list[tuple[Vote, int | None]]] = {}
    ordered: list[Sample] = []
    for q, judged in zip(qs, scored):
        rows = []
        for s, j in zip(by_q[q.id], judged):
            s.answer, s.correct = j.answer, j.correct
            s.extra.update(j.extra)
            rows.append((Vote(j.answer_class, bool(j.correct)), s.fork))
            ordered.append(s)
        table[q.id] = rows
    metrics = summarize(table, ks, native)
    missing = len(questions) - len(qs)
    if missing:
        metrics["questions_without_samples"] = missing
    return ordered, metrics


def metrics_tables(metrics: dict[str, Any], title: str) -> list[Any]:
    """The metrics table and, when samples carry forking tokens, the per-token table."""
    from forkctl import console

    pct = ("pass@", "cons@", "accuracy")
    rows = [[key, f"{100 * v:.2f}" if isinstance(v, float) and key.startswith(pct) else str(v)]
            for key, v in metrics.items() if not isinstance(v, dict)]
    tables = [console.table(title, ["metric", "value"], rows, right=(1,))]
    per_fork = metrics.get("per_fork", {})
    if per_fork:
        tables.append(console.table("per forking token", ["fork", "samples", "accuracy"],
                                    [[f if f == "none" else f"<think{f}>", row["n"], f"{100 * row['accuracy']:.2f}"]
                                     for f, row in per_fork.items()], right=(1, 2)))
    return tables

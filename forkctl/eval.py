"""``forkctl eval``: sample a model on a benchmark with forking tokens fixed, cycled or chosen; score; report.

Outputs in ``--out DIR``: ``samples.jsonl`` (one scored sample per line, appended as batches finish, so a rerun
generates only what is missing) and ``metrics.json`` (``config`` to reproduce the run, ``metrics``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from forkctl import forks
from forkctl.tasks import Task, get_task
from forkctl.config import EvalConfig, check_fingerprint, derive_seed, file_identity, package_versions, \
    run_config_path, write_run_config
from forkctl import console
from forkctl.errors import UserError
from forkctl.metrics import Vote, summarize
from forkctl.records import JsonlAppender, Question, RecordError, Sample, iter_json_lines, repair_tail, \
    write_json, write_records

SAMPLES_FILE = "samples.jsonl"


@dataclass
class EvalResult:
    metrics: dict[str, Any]
    config: dict[str, Any]
    samples_path: Path
    metrics_path: Path


def run_eval(cfg: EvalConfig) -> EvalResult:
    cfg.validate()
    task = get_task(cfg.task, **cfg.task_options())
    questions = task.load()
    if cfg.limit is not None:
        questions = questions[: cfg.limit]
    if not questions:
        raise UserError(f"task {cfg.task} has no questions")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    samples_path = out / SAMPLES_FILE
    fork_mode: str | int
    if cfg.samples:
        stored = _read_samples_for(Path(cfg.samples), questions)
        scored_part = stored
        fork_mode = cfg.fork
        native = _looks_native(stored) if cfg.fork == "none" else cfg.fork == "all"
    else:
        _claim_output(out, cfg)
        fork_mode, native = _generate_missing(cfg, task, questions, samples_path)
        stored = _read_samples_for(samples_path, questions)
        scored_part = [s for s in stored if s.sample < cfg.n]  # a smaller --n scores the first n samples
    scored, metrics = score_and_summarize(task, questions, scored_part, cfg.k, native)
    write_records(samples_path, _merge(stored, scored))  # never drops a stored sample
    source = task.describe()
    if source.get("private_tests") is False:
        console.warn(f"{cfg.task}: public tests only (no private tests in this data), so pass rates come out "
                     f"higher than LiveCodeBench's official numbers")
    config = {**asdict(cfg), "fork_mode": fork_mode if isinstance(fork_mode, str) else f"think{fork_mode}",
              "task_source": source, "first_prompt": task.user_message(questions[0], cfg.prompt_template),
              "scored_samples": len(scored), "versions": package_versions()}
    metrics_path = out / "metrics.json"
    write_json(metrics_path, {"config": config, "metrics": metrics})
    return EvalResult(metrics, config, samples_path, metrics_path)


def fingerprint(cfg: EvalConfig) -> dict[str, Any]:
    """What decides the samples generated: the model's identity and every generation setting (not --n, which
    may grow, nor --limit, --k or output options)."""
    keys = ("task", "backend", "fork", "num_forks", "fork_prefix", "fork_suffix", "prompt_template",
            "system_prompt", "temperature", "top_p", "max_new_tokens", "seed")
    fp = {key: getattr(cfg, key) for key in keys}
    fp["model"] = cfg.model
    fp["model_identity"] = file_identity(cfg.tokenizer or cfg.model or "") if cfg.backend == "openai" \
        else file_identity(cfg.model or "")
    if Path(cfg.task).exists():
        fp["task_identity"] = file_identity(cfg.task)
    return fp


def _claim_output(out: Path, cfg: EvalConfig) -> None:
    """Refuse to add samples made under other settings (or by an unknown run) to ``out``; ``--overwrite``
    starts again there."""
    fp = fingerprint(cfg)
    config_path = run_config_path(out, "eval")
    has_samples = (out / SAMPLES_FILE).exists()
    matched = check_fingerprint(config_path, fp, str(out), cfg.overwrite)
    if has_samples and not matched and not cfg.overwrite and not config_path.exists():
        raise UserError(f"{out} holds samples from a run without a recorded fingerprint (an older forkctl, or "
                        f"another tool): refusing to mix them; use a new --out, or --overwrite to start again there")
    if not matched and cfg.overwrite:
        for name in (SAMPLES_FILE, "metrics.json"):
            (out / name).unlink(missing_ok=True)
    write_run_config(config_path, "eval", cfg, fp)


def _merge(stored: list[Sample], scored: list[Sample]) -> list[Sample]:
    fresh = {s.key: s for s in scored}
    return [fresh.get(s.key, s) for s in stored]


# --------------------------------------------------------------------------------------------------
# Generation


def _generate_missing(cfg: EvalConfig, task: Task, questions: list[Question],
                      samples_path: Path) -> tuple[str | int, bool]:
    from forkctl.generation import SamplingConfig, load_backend

    done = _existing_keys(samples_path)
    backend = load_backend(cfg.backend, cfg.model or "", **cfg.backend_options())
    try:
        # The folder holding forkctl.json: the model's, or (openai backend) the local tokenizer's.
        fmt = forks.resolve_fork_format(cfg.tokenizer or cfg.model, backend.tokenizer, cfg.num_forks,
                                        cfg.fork_prefix, cfg.fork_suffix)
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
        # One generate batch per call, so progress moves with every batch (remote/vLLM backends take bigger ones).
        per_call = max(1, getattr(backend, "batch_size", 256) // cfg.n)
        by_question: dict[str, list[int]] = defaultdict(list)
        for q, j in todo:
            by_question[q.id].append(j)
        pending = [q for q in questions if q.id in by_question]
        with console.progress("generating", len(todo), not cfg.quiet) as bar, JsonlAppender(samples_path) as sink:
            for start in range(0, len(pending), per_call):
                chunk = pending[start:start + per_call]
                plans = _policy_choices(backend, task, chunk, by_question, fmt, fork_ids, cfg) if mode == "policy" \
                    else {q.id: {j: plan[j] for j in by_question[q.id]} for q in chunk}
                requests, slots = _requests_for(task, chunk, plans, fmt, backend.tokenizer, cfg)
                records = _to_samples(slots, backend.generate(requests, sampling))
                sink.write_many(records)
                bar.advance(len(records))
        return mode, mode == "all"
    finally:
        backend.close()


def _policy_choices(backend: Any, task: Task, chunk: list[Question], by_question: dict[str, list[int]],
                    fmt: forks.ForkFormat,
                    fork_ids: list[int], cfg: EvalConfig) -> dict[str, dict[int, int]]:
    """The model's own choice of forking token for each missing sample: drawn from π(·|x) over the N tokens
    (the policy gfpo trains), sharpened by --temperature like any sampled token, seeded per sample."""
    import math
    import random

    prompts = [forks.policy_prompt(backend.tokenizer, task.user_message(q, cfg.prompt_template), fmt,
                                   cfg.system_prompt) for q in chunk]
    choices: dict[str, dict[int, int]] = {}
    for q, logp in zip(chunk, backend.fork_logprobs(prompts, fork_ids)):
        t = max(cfg.temperature, 1e-6)
        weights = [math.exp((lp - max(logp)) / t) for lp in logp]
        choices[q.id] = {j: random.Random(derive_seed(cfg.seed, q.id, "policy", j)).choices(
            range(1, len(weights) + 1), weights)[0] for j in by_question[q.id]}
    return choices


def _requests_for(task: Task, chunk: list[Question], plans: dict[str, dict[int, int | None]], fmt: forks.ForkFormat,
                  tokenizer: Any, cfg: EvalConfig):
    """One request per (question, forking token) with n = the missing samples that use that token."""
    from forkctl.generation import Request

    requests, slots = [], []
    for q in chunk:
        groups: dict[int | None, list[int]] = defaultdict(list)
        for j, fork in sorted(plans[q.id].items()):
            groups[fork].append(j)
        for fork, idxs in groups.items():
            prompt = forks.render_prompt(tokenizer, task.user_message(q, cfg.prompt_template), fork, fmt,
                                         cfg.system_prompt)
            requests.append(Request(prompt=prompt, n=len(idxs), seed=derive_seed(cfg.seed, q.id, fork, idxs[0])))
            slots.append((q, idxs, fork))
    return requests, slots


def _to_samples(slots, completions) -> list[Sample]:
    """Unjudged samples: every sample is judged once, when the run is summarised (also after a resume)."""
    records = []
    for (q, idxs, fork), comps in zip(slots, completions):
        for j, comp in zip(idxs, comps):
            records.append(Sample(question_id=q.id, sample=j, fork=fork, text=comp.text,
                                  num_tokens=comp.num_tokens, finish_reason=comp.finish_reason,
                                  extra={"prompt_tokens": comp.prompt_tokens}))
    position = {q.id: i for i, (q, _, _) in enumerate(slots)}
    return sorted(records, key=lambda s: (position[s.question_id], s.sample))


# --------------------------------------------------------------------------------------------------
# Reading, resuming, scoring


def _existing_keys(path: Path) -> set[tuple[str, int]]:
    if not path.exists():
        return set()
    repair_tail(path)
    return {Sample.from_dict(obj, where).key for where, obj in iter_json_lines(path)}


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

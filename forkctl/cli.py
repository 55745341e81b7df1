"""The ``forkctl`` command line: one thin command per stage (options + YAML config -> the stage's function)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from forkctl import __version__
from forkctl.config import ConfigError, merge

app = typer.Typer(
    name="forkctl",
    help="Train LLMs to reason in parallel with global forking tokens <think1>..<thinkN> "
         "(arXiv 2510.05132): collect -> filter -> ssft -> gfpo -> eval -> inspect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

USER_ERRORS = (ValueError, ConfigError, FileNotFoundError, RuntimeError, KeyError)


# Options several commands share, declared once.
CONFIG_OPTION = typer.Option(None, help="YAML file of these options (CLI values win; unknown keys are an error).")
BASE_URL_OPTION = typer.Option(None, help="openai backend: server URL, e.g. http://127.0.0.1:8000/v1.")
TOKENIZER_OPTION = typer.Option(None, help="openai backend: local tokenizer/checkpoint used to render prompts "
                                "[default: --model].")
API_KEY_ENV_OPTION = typer.Option(None, help="openai backend: NAME of the environment variable holding the API key "
                                  "(never the key itself).")
CONCURRENCY_OPTION = typer.Option(16, help="openai backend: requests in flight.")


def _options(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """Merge ``--config`` YAML under the options typed on the command line (``config`` itself is dropped)."""
    # Compare by name: typer may ship its own copy of click's ParameterSource enum.
    explicit = {name for name in values if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"}
    merged = merge(values, explicit, values.get("config"))
    merged.pop("config", None)
    return merged


def _run(fn: Callable[[], Any]) -> Any:
    """Run a stage; a user error becomes one red line and exit status 2, not a traceback."""
    try:
        return fn()
    except USER_ERRORS as exc:
        if os.environ.get("FORKCTL_DEBUG"):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def parse_ks(values: list[Any] | str | int | None) -> list[int]:
    """``--k 1 --k 8``, ``--k 1,8`` or a YAML list -> [1, 8] (sorted, unique)."""
    if values is None:
        return [1]
    items = values if isinstance(values, list) else [values]
    ks: set[int] = set()
    for item in items:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                ks.add(int(part))
            except ValueError:
                raise ValueError(f"--k expects integers such as 1,8; got {part!r}") from None
    return sorted(ks)


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        typer.echo(f"forkctl {__version__}")
        raise typer.Exit()


@app.command("eval")
def eval_cmd(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, help="Model: a local checkpoint directory or a Hub name. With "
                                        "--backend openai, the model name the server serves."),
    benchmark: str = typer.Option("aime24", help="Task name (aime24, aime25, math500, ...) or a questions "
                                  "file (.jsonl/.parquet with id, problem, answer). Named ones load "
                                  "$FORKCTL_DATA_DIR/<name>.jsonl when present, else the Hub dataset."),
    backend: str = typer.Option("transformers", help="Generation backend: transformers (batched, CPU or GPU), "
                                "vllm (offline engine; pip install 'forkctl\\[vllm]'), or openai (any "
                                "OpenAI-compatible server, see --base-url)."),
    n: int = typer.Option(1, help="Samples per question."),
    k: Optional[list[str]] = typer.Option(None, help="k for pass@k and cons@k; repeat or comma-separate "
                                          "(--k 1 --k 8 or --k 1,8). Each k must be <= --n. [default: 1]"),
    fork: str = typer.Option("none", help="Forking token: none (plain prompt); a fixed token (think1 or 1); all "
                             "(the n samples spread evenly over the N tokens, interleaved 1,2,..,N,1,2..; enables "
                             "cons@native); policy (the model chooses: drawn from its distribution over the N tokens "
                             "at the fork position, recorded per sample)."),
    num_forks: Optional[int] = typer.Option(None, help="Number of forking tokens N [default: from the "
                                            "checkpoint's forkctl.json, else the <thinkK> tokens in its vocabulary]."),
    fork_prefix: Optional[str] = typer.Option(None, help="Text between the generation prompt and <thinkK> "
                                              "[default: the checkpoint's, else <|im_start|> when the tokenizer "
                                              "has it]."),
    fork_suffix: Optional[str] = typer.Option(None, help="Text after <thinkK> [default: newline]."),
    temperature: float = typer.Option(0.6, help="Sampling temperature (0 = greedy)."),
    top_p: float = typer.Option(0.95, help="Nucleus sampling probability mass."),
    max_new_tokens: int = typer.Option(1024, help="Maximum generated tokens per sample (truncated samples get "
                                       "finish_reason 'length')."),
    seed: int = typer.Option(0, help="Random seed (per-request seeds derive from it)."),
    out: str = typer.Option("runs/eval", help="Output directory: samples.jsonl and metrics.json. Rerunning with "
                            "the same --out generates only the missing samples."),
    samples: Optional[str] = typer.Option(None, help="Re-score an existing samples.jsonl (answers re-extracted "
                                          "from each text and re-verified) instead of generating."),
    limit: Optional[int] = typer.Option(None, help="Use only the first LIMIT questions."),
    system_prompt: Optional[str] = typer.Option(None, help="A system message to put before each question."),
    batch_size: int = typer.Option(32, help="Sequences per generate() batch (transformers backend)."),
    dtype: str = typer.Option("auto", help="Model dtype: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16."),
    base_url: Optional[str] = BASE_URL_OPTION,
    tokenizer: Optional[str] = TOKENIZER_OPTION,
    api_key_env: Optional[str] = API_KEY_ENV_OPTION,
    concurrency: int = CONCURRENCY_OPTION,
    vllm_args: Optional[str] = typer.Option(None, help="vllm backend: JSON of extra vllm.LLM arguments, e.g. "
                                            "'{\"tensor_parallel_size\": 8, \"max_model_len\": 32768}'."),
    config: Optional[Path] = CONFIG_OPTION,
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Sample a model on a benchmark and report pass@k, cons@k, cons@native and per-token accuracy."""
    values = {name: value for name, value in locals().items() if name != "ctx"}
    from forkctl.eval import EvalConfig, run_eval

    def go() -> None:
        opts = _options(ctx, values)
        quiet = opts.pop("quiet")
        opts["k"] = parse_ks(opts["k"])
        if isinstance(opts["vllm_args"], str):
            opts["vllm_args"] = json.loads(opts["vllm_args"])
        result = run_eval(EvalConfig(**opts), progress=not quiet)
        print_metrics(result.metrics, f"{opts['benchmark']} · {opts['model'] or opts['samples']}")
        console.print(f"wrote {result.samples_path} and {result.metrics_path}")

    _run(go)


def print_metrics(metrics: dict[str, Any], title: str) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        if isinstance(value, float):
            table.add_row(key, f"{100 * value:.2f}" if key.startswith(("pass@", "cons@", "accuracy")) else f"{value}")
        elif not isinstance(value, dict):
            table.add_row(key, str(value))
    Console().print(table)
    per_fork = metrics.get("per_fork", {})
    if per_fork:
        t = Table(title="per forking token")
        t.add_column("fork")
        t.add_column("samples", justify="right")
        t.add_column("accuracy", justify="right")
        for f, row in per_fork.items():
            t.add_row(f if f == "none" else f"<think{f}>", str(row["n"]), f"{100 * row['accuracy']:.2f}")
        Console().print(t)


@app.command("toy-model")
def toy_model_cmd(
    out: Path = typer.Argument(..., help="Directory to write the model and tokenizer to."),
    num_forks: int = typer.Option(4, help="Forking tokens to add."),
    hidden_size: int = typer.Option(128, help="Hidden size."),
    num_layers: int = typer.Option(2, help="Transformer layers."),
    seed: int = typer.Option(0, help="Initialisation seed."),
) -> None:
    """Build a tiny random Qwen2 model with a locally trained tokenizer (no Hub needed) for trying things out."""
    from forkctl.toy import build_toy_model

    path = _run(lambda: build_toy_model(out, num_forks=num_forks, hidden_size=hidden_size, num_layers=num_layers,
                                        seed=seed))
    console.print(f"wrote a tiny Qwen2 with {num_forks} forking tokens to {path}")


@app.command("collect")
def collect_cmd(
    ctx: typer.Context,
    questions: Optional[str] = typer.Option(None, help="Questions: a benchmark name (aime24, aime25, math500, ...) "
                                            "or a file (.jsonl/.parquet with id, problem, answer)."),
    teachers: Optional[str] = typer.Option(None, help="YAML file listing the teachers: name, base_url, model, "
                                           "api_key_env (the NAME of the variable holding the key, never the key), "
                                           "samples, concurrency, rpm, params, price, timeout, send_n. See "
                                           "examples/teachers.yaml."),
    samples: int = typer.Option(1, help="Samples per teacher per question (a teacher's own 'samples' wins)."),
    out: str = typer.Option("runs/traces.jsonl", help="Output JSONL, one response per line. Rerunning the same "
                            "command requests only the (question, teacher, sample) not yet recorded; the resolved "
                            "config is saved beside it as <name>.config.json."),
    concurrency: int = typer.Option(64, help="Requests in flight over all teachers (each teacher also has its own "
                                    "'concurrency', defaulting to this)."),
    timeout: float = typer.Option(600.0, help="Per-request timeout in seconds (a teacher's 'timeout' wins)."),
    max_retries: int = typer.Option(6, help="Retries per request on 429, 5xx, timeouts, connection errors and "
                                    "malformed or empty responses; then the failure is recorded with its error."),
    backoff: float = typer.Option(1.0, help="Base of the exponential backoff in seconds (doubling per retry, with "
                                  "jitter); a server's Retry-After wins."),
    max_backoff: float = typer.Option(60.0, help="Longest backoff between retries, in seconds."),
    limit: Optional[int] = typer.Option(None, help="Use only the first LIMIT questions."),
    prompt_template: str = typer.Option("{problem}\n\nPlease reason step by step, and put your final answer "
                                        "within \\boxed{}.", help="User message; {problem} is replaced by the "
                                        "question."),
    system_prompt: Optional[str] = typer.Option(None, help="A system message to put before each question."),
    retry_failed: bool = typer.Option(False, help="Request again the responses recorded as failed by an earlier "
                                      "run (their error lines are removed first, so each key stays recorded once)."),
    config: Optional[Path] = CONFIG_OPTION,
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Collect reasoning traces from several teachers (OpenAI-compatible APIs): resumable, rate-limited, costed."""
    values = {name: value for name, value in locals().items() if name != "ctx"}
    from forkctl.collect import CollectConfig, run_collect, summary_table

    def go() -> None:
        opts = _options(ctx, values)
        quiet = opts.pop("quiet")
        result = run_collect(CollectConfig(**opts), progress=not quiet)
        Console().print(summary_table(result))
        console.print(f"wrote {result.out_path} (config: {result.config_path})")
        if result.failed:
            console.print(f"[yellow]{result.failed} responses failed after retries and were recorded with their "
                          f"error; rerun with --retry-failed to request them again[/]")
        aborted = {t: s for t, s in result.stats.items() if s.aborted}
        if aborted:
            raise RuntimeError("; ".join(f"teacher {t} stopped ({s.aborted}); its {s.unsent} remaining responses "
                                         f"were not requested: fix it and rerun to resume" for t, s in aborted.items()))

    _run(go)


@app.command("filter")
def filter_cmd(
    ctx: typer.Context,
    traces: Optional[str] = typer.Option(None, help="Responses written by forkctl collect (JSONL)."),
    questions: Optional[str] = typer.Option(None, help="The questions they answer: benchmark name or file (gives "
                                            "the problem text and the gold answers)."),
    out: str = typer.Option("runs/trace_sets.jsonl", help="Output trace sets for ssft (JSONL: id, problem, answer, "
                            "traces[{teacher, text}]); a <name>.summary.json is written beside it."),
    max_traces: int = typer.Option(4, help="M: most traces kept per question, taken round-robin over teachers so "
                                   "they come from as many different teachers as possible."),
    min_traces: int = typer.Option(1, help="Questions left with fewer traces are dropped."),
    mode: str = typer.Option("reference", help="reference: keep answers Math-Verify-equivalent to the gold answer; "
                             "majority: group answers by Math-Verify equivalence and keep the largest group when it "
                             "holds at least --quorum of the answers (a tie keeps nothing)."),
    quorum: float = typer.Option(0.5, help="majority mode: share of the answered responses the largest group needs."),
    dedup_threshold: float = typer.Option(0.8, help="Drop a trace whose word 5-gram Jaccard similarity with a kept "
                                          "one is at least this (1.0 drops only exact copies)."),
    tokenizer: Optional[str] = typer.Option(None, help="Tokenizer (local dir or name) measuring --max-tokens."),
    max_tokens: Optional[int] = typer.Option(None, help="Drop traces longer than this many tokens of --tokenizer."),
    reasoning_separator: str = typer.Option("\n</think>\n\n", help="Put between a response's separate reasoning "
                                            "field and its content to form the trace text."),
    config: Optional[Path] = CONFIG_OPTION,
) -> None:
    """Keep up to M distinct correct traces per question (dropping failed, truncated, wrong, duplicate, too long)."""
    values = {name: value for name, value in locals().items() if name != "ctx"}
    from forkctl.filter import FilterConfig, run_filter, summary_tables

    def go() -> None:
        opts = _options(ctx, values)
        result = run_filter(FilterConfig(**opts))
        for table in summary_tables(result):
            Console().print(table)
        console.print(f"wrote {len(result.trace_sets)} trace sets to {result.out_path} (summary: "
                      f"{result.summary_path})")

    _run(go)


@app.command("gfpo")
def gfpo_cmd(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, help="Starting checkpoint: an SSFT model with forking tokens."),
    data: str = typer.Option("synthetic-train", help="Training questions with answers: a benchmark name "
                             "(synthetic-train: the synthetic task's training split; math500, ...) or a questions "
                             "file."),
    out: str = typer.Option("runs/gfpo", help="Output directory: checkpoint/, gfpo_log.jsonl (per-step stats), "
                            "gfpo_state.pt (for --resume), gfpo_config.json."),
    num_forks: Optional[int] = typer.Option(None, help="Forking tokens N [default: from the checkpoint]."),
    estimator: str = typer.Option("sampled", help="sampled: GRPO-style groups of --group-size tokens drawn from π, "
                                  "advantage r - mean(group); exhaustive: --group-size rollouts for EVERY token, "
                                  "exact expected-reward gradient sum_i grad π_i (v_i - b)."),
    group_size: int = typer.Option(8, help="G: rollouts per question (sampled) or per token (exhaustive)."),
    steps: int = typer.Option(20, help="Optimiser steps."),
    batch_size: int = typer.Option(16, help="Questions per step (split across accelerate processes)."),
    lr: Optional[float] = typer.Option(None, help="Learning rate [default: 0.01 for --train fork-head, 1e-6 for "
                                       "full]."),
    beta: float = typer.Option(0.0, help="Weight of the exact KL(π || π_start) over the N tokens."),
    clip: float = typer.Option(0.2, help="PPO ratio clipping epsilon (matters with --ppo-epochs > 1)."),
    ppo_epochs: int = typer.Option(1, help="Policy updates per batch of rollouts (sampled estimator)."),
    scale_rewards: bool = typer.Option(False, help="sampled: divide group advantages by the group's reward std; "
                                       "exhaustive: standardise each question's token values. Either way every "
                                       "question weighs the same in the update."),
    train: str = typer.Option("fork-head", help="fork-head: only the forking tokens' output rows (untied), on the "
                              "frozen hidden state; the reasoning modes cannot drift. full: every parameter (the "
                              "paper's update; needs --rollout-backend transformers to stay on-policy)."),
    rollout_backend: str = typer.Option("transformers", help="Rollouts: transformers (the learner's own weights), "
                                        "vllm, or openai (an OpenAI-compatible server such as a vllm serve fleet; "
                                        "the learner keeps the policy)."),
    base_url: Optional[str] = BASE_URL_OPTION,
    tokenizer: Optional[str] = TOKENIZER_OPTION,
    api_key_env: Optional[str] = API_KEY_ENV_OPTION,
    concurrency: int = CONCURRENCY_OPTION,
    rollout_batch_size: int = typer.Option(64, help="transformers rollouts: sequences per generate batch."),
    temperature: float = typer.Option(0.6, help="Rollout sampling temperature."),
    top_p: float = typer.Option(0.95, help="Rollout nucleus sampling."),
    max_new_tokens: int = typer.Option(1024, help="Rollout length budget (a truncated rollout earns its judged "
                                       "reward, usually 0)."),
    reward: str = typer.Option("auto", help="Reward judge: auto (the data benchmark's own: Math-Verify for math "
                               "benchmarks and question files, the checker for synthetic), math (Math-Verify), or "
                               "synthetic (the synthetic task's checker, e.g. for a file of synthetic questions)."),
    limit: Optional[int] = typer.Option(None, help="Use only the first LIMIT questions."),
    seed: int = typer.Option(0, help="Random seed (token sampling, question order)."),
    save_every: int = typer.Option(0, help="Also checkpoint every this many steps (0: only at the end)."),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last checkpoint and step."),
    system_prompt: Optional[str] = typer.Option(None, help="A system message before each question."),
    config: Optional[Path] = CONFIG_OPTION,
    quiet: bool = typer.Option(False, help="No per-step lines."),
) -> None:
    """RL on the choice of forking token only: sample <think i> from π(·|x), roll out, reward, update log π."""
    values = {name: value for name, value in locals().items() if name != "ctx"}
    from forkctl.gfpo import GFPOConfig, run_gfpo

    def go() -> None:
        opts = _options(ctx, values)
        quiet = opts.pop("quiet")
        result = run_gfpo(GFPOConfig(**opts), progress=not quiet)
        console.print(f"wrote {result['checkpoint']}")

    _run(go)


@app.command("ssft")
def ssft_cmd(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, help="Base model: a checkpoint directory or a Hub name (any causal LM). "
                                        "<think1>..<thinkN> are added when missing (see --fork-init)."),
    data: Optional[str] = typer.Option(None, help="Trace sets: JSONL (or Parquet), one question per line with its "
                                       "traces: {id, problem, answer, traces: [{teacher, text}, ...]}."),
    out: str = typer.Option("runs/ssft", help="Output directory: the final checkpoint (loadable by "
                            "AutoModelForCausalLM/AutoTokenizer/vLLM, with forkctl.json), checkpoint-* folders, "
                            "matching.jsonl (per step and question: assignment and cost matrix), ssft_summary.json."),
    num_forks: Optional[int] = typer.Option(None, help="Forking tokens N [default: the model's forkctl.json, else "
                                            "the <thinkK> tokens in its vocabulary]. Each question needs M <= N "
                                            "traces (except --matching mixed)."),
    matching: str = typer.Option("bipartite", help="bipartite (SSFT: min-cost assignment of traces to tokens, "
                                 "per question per step); random (a random distinct token per trace each step); "
                                 "fixed (trace j -> <think j>, file order); mixed (plain multi-trace SFT: every "
                                 "trace its own example with <think1>)."),
    match_prefix_tokens: int = typer.Option(1000, help="L: the cost of (token i, trace j) is the mean NLL of the "
                                            "first L tokens of trace j after the prompt and <think i>."),
    match_chunk: int = typer.Option(0, help="Rows per no-grad forward pass of the cost computation (0 = all N*M "
                                    "prefixes of the micro-batch in one pass); lower it to cap memory."),
    max_seq_len: int = typer.Option(4096, help="Longest prompt + trace + end token; longer traces are dropped "
                                    "and counted (or stop the run with --strict)."),
    fork_label: bool = typer.Option(True, "--fork-label/--no-fork-label", help="Also train the forking token (and "
                                    "the suffix after it) as a label, so the model can later choose its own token "
                                    "(eval --fork policy, gfpo). The chat prompt before it is never a label."),
    fork_init: str = typer.Option("mean", help="Initial embedding of forking tokens added here: mean (of all rows) "
                                  "or an existing token to copy, e.g. '<think>'."),
    fork_prefix: Optional[str] = typer.Option(None, help="Text between the generation prompt and <thinkK> "
                                              "[default: the checkpoint's, else <|im_start|> when the tokenizer "
                                              "has it]."),
    fork_suffix: Optional[str] = typer.Option(None, help="Text after <thinkK> [default: newline]."),
    system_prompt: Optional[str] = typer.Option(None, help="A system message to put before each question."),
    lr: float = typer.Option(1e-5, help="Peak learning rate."),
    batch_size: int = typer.Option(8, help="Questions per optimiser step (over all devices and accumulation "
                                   "steps; each brings its M traces)."),
    grad_accum: int = typer.Option(1, help="Gradient accumulation steps (micro-batch = batch-size / (grad-accum x "
                                   "processes))."),
    epochs: float = typer.Option(1.0, help="Passes over the data."),
    max_steps: Optional[int] = typer.Option(None, help="Optimiser steps; overrides --epochs."),
    lr_scheduler: str = typer.Option("cosine", help="transformers scheduler: cosine, linear, constant, "
                                     "constant_with_warmup, ..."),
    warmup: float = typer.Option(0.03, help="Warm-up: a fraction of the steps if < 1, else a number of steps."),
    weight_decay: float = typer.Option(0.0, help="AdamW weight decay."),
    max_grad_norm: float = typer.Option(1.0, help="Gradient clipping norm."),
    bf16: bool = typer.Option(False, help="bf16 mixed precision (GPU)."),
    gradient_checkpointing: bool = typer.Option(False, help="Recompute activations in the backward pass (less "
                                                "memory, ~30% more time)."),
    seed: int = typer.Option(0, help="Seed (initialisation of new rows, data order, random matching)."),
    save_steps: int = typer.Option(500, help="Save a checkpoint-STEP folder every this many steps."),
    save_total_limit: Optional[int] = typer.Option(2, help="Keep at most this many checkpoint folders."),
    logging_steps: int = typer.Option(10, help="Log loss, matched cost and assignment switch rate every this many "
                                      "steps."),
    report_to: str = typer.Option("none", help="Trainer loggers: none, tensorboard, wandb, ... (comma-separated)."),
    resume: bool = typer.Option(False, help="Resume from the last checkpoint-* in --out (the matching log is cut "
                                "back to that step)."),
    strict: bool = typer.Option(False, help="Stop at the first bad trace set (file:line) instead of skipping and "
                                "counting it."),
    config: Optional[Path] = CONFIG_OPTION,
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Set-supervised fine-tuning: each question's traces matched to distinct forking tokens (bipartite matching)."""
    values = {name: value for name, value in locals().items() if name != "ctx"}
    from forkctl.ssft import SSFTConfig, run_ssft

    def go() -> None:
        opts = _options(ctx, values)
        summary = run_ssft(SSFTConfig(**opts))
        console.print(f"trained {summary['global_step']} steps (loss {summary['train_loss']:.4f}); wrote "
                      f"{opts['out']}")

    _run(go)


@app.command("synthetic-data")
def synthetic_data_cmd(
    ctx: typer.Context,
    out: str = typer.Option("synthetic_train.jsonl", help="Trace-set JSONL to write (training questions only: "
                            "never one of the held-out `synthetic` benchmark questions)."),
    questions: int = typer.Option(2000, help="Questions, each with one trace per strategy (in a shuffled order)."),
    seed: int = typer.Option(0, help="Seed for questions and trace order."),
    strategies: Optional[str] = typer.Option(None, help="Comma-separated subset of forward,backward,direct "
                                             "[default: all three]."),
    min_items: int = typer.Option(2, help="Fewest digits per question (2..12)."),
    max_items: int = typer.Option(8, help="Most digits per question (2..12)."),
    model_out: Optional[str] = typer.Option(None, help="Also build a fresh tiny Qwen2 (~1 M parameters, tokenizer "
                                            "fitted to the task) here: the base to train from."),
    num_forks: int = typer.Option(3, help="Forking tokens of the --model-out base."),
    hidden_size: int = typer.Option(128, help="Hidden size of the --model-out base."),
    num_layers: int = typer.Option(4, help="Layers of the --model-out base."),
    config: Optional[Path] = CONFIG_OPTION,
) -> None:
    """Write trace sets of the synthetic multi-strategy task (and optionally a fresh tiny base model for it)."""
    values = {name: value for name, value in locals().items() if name != "ctx"}
    from forkctl.tasks.synthetic import build_synthetic_model, write_trace_sets

    def go() -> None:
        o = _options(ctx, values)
        strats = [s.strip() for s in o["strategies"].split(",")] if o["strategies"] else None
        path = write_trace_sets(o["out"], o["questions"], o["seed"], strats, o["min_items"], o["max_items"])
        console.print(f"wrote {o['questions']} trace sets to {path}")
        if o["model_out"]:
            build_synthetic_model(o["model_out"], num_forks=o["num_forks"], hidden_size=o["hidden_size"],
                                  num_layers=o["num_layers"], seed=o["seed"])
            console.print(f"wrote a tiny Qwen2 with {o['num_forks']} forking tokens to {o['model_out']}")

    _run(go)


def main() -> None:
    app(prog_name="forkctl")


if __name__ == "__main__":
    sys.exit(main())

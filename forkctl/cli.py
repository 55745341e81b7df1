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


def _options(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """Merge ``--config`` YAML under the options typed on the command line."""
    # Compare by name: typer may ship its own copy of click's ParameterSource enum.
    explicit = {name for name in values if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"}
    return merge(values, explicit, values.get("config"))


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
    benchmark: str = typer.Option("aime24", help="Benchmark name (aime24, aime25, math500, ...) or a questions "
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
                             "cons@native); policy (the model emits its own token, recorded per sample)."),
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
    base_url: Optional[str] = typer.Option(None, help="openai backend: server URL, e.g. http://127.0.0.1:8000/v1."),
    tokenizer: Optional[str] = typer.Option(None, help="openai backend: local tokenizer/checkpoint used to render "
                                            "prompts [default: --model]."),
    api_key_env: Optional[str] = typer.Option(None, help="openai backend: NAME of the environment variable "
                                              "holding the API key (never the key itself)."),
    concurrency: int = typer.Option(16, help="openai backend: requests in flight."),
    vllm_args: Optional[str] = typer.Option(None, help="vllm backend: JSON of extra vllm.LLM arguments, e.g. "
                                            "'{\"tensor_parallel_size\": 8, \"max_model_len\": 32768}'."),
    config: Optional[Path] = typer.Option(None, help="YAML file of these options (CLI values win; unknown keys "
                                          "are an error)."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Sample a model on a benchmark and report pass@k, cons@k, cons@native and per-token accuracy."""
    values = {name: value for name, value in locals().items() if name != "ctx"}
    from forkctl.eval import EvalConfig, run_eval

    def go() -> None:
        opts = _options(ctx, values)
        opts.pop("config"), opts.pop("quiet")
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


def main() -> None:
    app(prog_name="forkctl")


if __name__ == "__main__":
    sys.exit(main())

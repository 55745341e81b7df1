"""The ``forkctl`` command line, generated from the config dataclasses in ``config.py``.

Each stage command is built from its config class: one option per field (its default, help, choices and aliases
come from the field), plus ``--config FILE`` (YAML; the options typed on the command line win). Values from
both are converted and checked by :func:`forkctl.config.build_config`. A :class:`~forkctl.errors.UserError` is
printed as one line and exits 2; anything else keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Optional

import typer
from typer.core import TyperGroup

from forkctl import __version__, config as C
from forkctl import console
from forkctl.errors import UserError

class OneLineErrors(TyperGroup):
    """Usage errors (an unknown option, a value not among the choices) as one line and exit 2, like every other
    user error."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except typer.TyperException as exc:  # typer vendors click: its exceptions derive from this
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            console.error(message.replace("Value error, ", ""))
            sys.exit(getattr(exc, "exit_code", 2))
        except typer.Abort:
            console.error("aborted")
            sys.exit(1)
        if isinstance(code, int):
            sys.exit(code)
        return code


app = typer.Typer(
    name="forkctl",
    cls=OneLineErrors,
    help="Train LLMs to reason in parallel with global forking tokens <think1>..<thinkN> "
         "(arXiv 2510.05132): collect -> filter -> ssft -> gfpo -> eval.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is plain: square brackets (defaults, extras) must survive
)

CONFIG_HELP = "YAML file of these options (keys as the option names; the options typed here win; unknown keys " \
              "are an error)."


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        typer.echo(f"forkctl {__version__}")
        raise typer.Exit()


def run_user_errors(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; a user error becomes one red line and exit status 2 (FORKCTL_DEBUG=1 shows the traceback)."""
    try:
        return fn()
    except UserError as exc:
        if os.environ.get("FORKCTL_DEBUG"):
            raise
        console.error(str(exc) or type(exc).__name__)
        raise typer.Exit(2) from None


# --------------------------------------------------------------------------------------------------
# Generating a command from a config class


def _cli_parameter(cls: type, f: dataclasses.Field) -> inspect.Parameter:
    tp, optional = C.unwrap_optional(C.field_types(cls)[f.name])
    meta = f.metadata
    decls = [C.option_name(f.name)] + [C.option_name(a) for a in meta.get("aliases", ())]
    default = f.default if f.default is not dataclasses.MISSING else None
    kwargs: dict[str, Any] = {"help": meta.get("help", "")}
    if meta.get("cli_default"):
        kwargs["show_default"] = meta["cli_default"]
    origin = typing.get_origin(tp)
    if meta.get("argument"):
        annotation: Any = list[str] if origin is list else str  # a list argument takes one or more
        param = typer.Argument(..., help=kwargs["help"], show_default=False, metavar=f.name.upper())
        return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=param, annotation=annotation)
    if tp is bool:
        annotation = bool
        decls = [f"{C.option_name(f.name)}/--no-{f.name.replace('_', '-')}"]
    elif origin is Literal:
        annotation = tp  # typer shows and checks the choices
    elif origin is list:
        annotation, default = Optional[list[str]], None
        kwargs.setdefault("show_default", ",".join(map(str, f.default_factory())))  # type: ignore[misc]
        item = typing.get_args(tp)[0]
        kwargs["metavar"] = "<int,...>" if item is int else f"<{item.__name__}>"
    elif origin is dict:
        annotation, default = Optional[str], None
        kwargs.setdefault("show_default", "{}")
    else:
        annotation = Optional[tp] if optional or default is None else tp
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=typer.Option(default, *decls, **kwargs),
                             annotation=annotation)


def typed_on_command_line(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    # Compare by name: typer may ship its own copy of click's ParameterSource enum.
    return {name: value for name, value in values.items()
            if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"}


def config_command(name: str, cls: type, run: Callable[[Any], None], yaml: bool = True) -> None:
    """Register ``forkctl NAME`` with one option per field of ``cls``; ``run(config)`` does the work."""
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    own = set(cls.__dict__.get("__annotations__", {}))  # the stage's own options first, shared groups after
    ordered = sorted(dataclasses.fields(cls), key=lambda f: f.name not in own)
    params += [_cli_parameter(cls, f) for f in ordered]
    if yaml:
        params.append(inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                                        default=typer.Option(None, "--config", help=CONFIG_HELP)))

    def command(**values: Any) -> None:
        ctx = values.pop("ctx")
        config_file = values.pop("config", None)

        def go() -> None:
            layers = [(str(config_file), C.load_yaml(config_file))] if config_file else []
            layers.append(("", typed_on_command_line(ctx, values)))
            run(C.build_config(cls, *layers))

        run_user_errors(go)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = inspect.getdoc(cls)
    command.__name__ = f"{name.replace('-', '_')}_cmd"
    app.command(name)(command)


# --------------------------------------------------------------------------------------------------
# The stages (imports are local: `forkctl --help` must not import torch)


def _eval(cfg: C.EvalConfig) -> None:
    from forkctl.eval import metrics_tables, run_eval

    result = run_eval(cfg)
    console.show(*metrics_tables(result.metrics, f"{cfg.task} · {cfg.model or cfg.samples}"))
    console.note(f"wrote {result.samples_path} and {result.metrics_path}")


def _collect(cfg: C.CollectConfig) -> None:
    from forkctl.collect import run_collect, summary_table

    result = run_collect(cfg)
    console.show(summary_table(result))
    console.note(f"wrote {result.out_path} (config: {result.config_path})")
    if result.failed:
        console.warn(f"{result.failed} responses failed after retries and were recorded with their error; rerun "
                     f"with --retry-failed to request them again")
    aborted = {t: s for t, s in result.stats.items() if s.aborted}
    if aborted:
        raise UserError("; ".join(f"teacher {t} stopped ({s.aborted}); its {s.unsent} remaining responses were not "
                                  f"requested: fix it and rerun to resume" for t, s in aborted.items()))


def _filter(cfg: C.FilterConfig) -> None:
    from forkctl.filter import run_filter, summary_tables

    result = run_filter(cfg)
    console.show(*summary_tables(result))
    console.note(f"wrote {len(result.trace_sets)} trace sets to {result.out_path} (summary: {result.summary_path})")


def _ssft(cfg: C.SSFTConfig) -> None:
    from forkctl.ssft import run_ssft

    summary = run_ssft(cfg)
    console.note(f"trained {summary['global_step']} steps (loss {summary['train_loss']:.4f}); wrote {cfg.out}")


def _gfpo(cfg: C.GFPOConfig) -> None:
    from forkctl.gfpo import run_gfpo

    result = run_gfpo(cfg)
    console.note(f"wrote the model to {result['model']}")


def _inspect(cfg: C.InspectConfig) -> None:
    from forkctl.inspect import run_inspect

    run_inspect(cfg.runs, fmt=cfg.format, plot_dir=cfg.plot, question=cfg.question, full=cfg.full)


def _synthetic_data(cfg: C.SyntheticDataConfig) -> None:
    if cfg.task == "synthetic-walk":
        from forkctl.tasks import walk

        path = walk.write_trace_sets(cfg.out, cfg.questions, cfg.seed)
        build = walk.build_model
    else:
        from forkctl.tasks.synthetic import build_synthetic_model, write_trace_sets

        strategies = [s.strip() for s in cfg.strategies.split(",")] if cfg.strategies else None
        path = write_trace_sets(cfg.out, cfg.questions, cfg.seed, strategies, cfg.min_items, cfg.max_items)
        build = build_synthetic_model
    console.note(f"wrote {cfg.questions} trace sets to {path}")
    if cfg.model_out:
        build(cfg.model_out, num_forks=cfg.num_forks, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
              seed=cfg.seed)
        console.note(f"wrote a tiny Qwen2 with {cfg.num_forks} forking tokens to {cfg.model_out}")


def _toy_model(cfg: C.ToyModelConfig) -> None:
    from forkctl.toy import build_toy_model

    path = build_toy_model(cfg.out, num_forks=cfg.num_forks, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                           seed=cfg.seed)
    console.note(f"wrote a tiny Qwen2 with {cfg.num_forks} forking tokens to {path}")


# The stages a pipeline file may list: kind -> (config class, runner). A service has no runner: `forkctl run`
# starts it for the rest of the pipeline.
STAGE_KINDS: dict[str, tuple[type, Callable[[Any], Any] | None]] = {
    "synthetic-data": (C.SyntheticDataConfig, _synthetic_data),
    "synthetic-teachers": (C.SyntheticTeachersConfig, None),
    "served-teachers": (C.ServedTeachersConfig, None),
    "collect": (C.CollectConfig, _collect),
    "filter": (C.FilterConfig, _filter),
    "ssft": (C.SSFTConfig, _ssft),
    "gfpo": (C.GFPOConfig, _gfpo),
    "eval": (C.EvalConfig, _eval),
    "inspect": (C.InspectConfig, _inspect),
}


def _run(cfg: C.RunConfig) -> None:
    from forkctl.run import Pipeline

    Pipeline(cfg, STAGE_KINDS).run()


config_command("collect", C.CollectConfig, _collect)
config_command("filter", C.FilterConfig, _filter)
config_command("ssft", C.SSFTConfig, _ssft)
config_command("gfpo", C.GFPOConfig, _gfpo)
config_command("eval", C.EvalConfig, _eval)
config_command("inspect", C.InspectConfig, _inspect, yaml=False)
config_command("synthetic-data", C.SyntheticDataConfig, _synthetic_data)
config_command("toy-model", C.ToyModelConfig, _toy_model, yaml=False)
config_command("run", C.RunConfig, _run, yaml=False)


def main() -> None:
    app(prog_name="forkctl")


if __name__ == "__main__":
    sys.exit(main())

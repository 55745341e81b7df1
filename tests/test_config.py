"""Options declared once: YAML typed by field, every field reachable from the CLI and YAML, one-line errors,
help text that keeps square brackets, a CLI that imports no torch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing

import pytest
from typer.testing import CliRunner

from forkctl import config as C
from forkctl.cli import app

STAGES = {"eval": C.EvalConfig, "collect": C.CollectConfig, "filter": C.FilterConfig, "ssft": C.SSFTConfig,
          "gfpo": C.GFPOConfig, "synthetic-data": C.SyntheticDataConfig, "inspect": C.InspectConfig,
          "run": C.RunConfig}
POSITIONAL = {"inspect": ("runs", ["a", "b"]), "run": ("pipeline", "p.yaml")}
runner = CliRunner()


def test_yaml_reads_floats_that_yaml_1_1_leaves_as_strings(tmp_path):
    path = tmp_path / "ssft.yaml"
    path.write_text("model: gpt2\ntrace_sets: data.jsonl\nlr: 1e-5\nwarmup: 5\n")
    cfg = C.config_from_yaml(C.SSFTConfig, path)
    assert cfg.lr == 1e-5 and isinstance(cfg.lr, float) and cfg.warmup == 5.0


@pytest.mark.parametrize("yaml_text, message", [
    ("n: four\n", "field 'n': expected an integer, got 'four'"),
    ("temperature: -1\n", "field 'temperature': must be >= 0, got -1"),
    ("backend: tpu\n", "field 'backend': expected one of transformers, vllm, openai, got 'tpu'"),
    ("k: [1, x]\n", "field 'k': expected an integer, got 'x'"),
    ("quiet: maybe\n", "field 'quiet': expected true or false"),
    ("n: [1\n", "invalid YAML"),
])
def test_a_mistyped_yaml_value_is_one_line_naming_file_and_field(tmp_path, yaml_text, message):
    path = tmp_path / "eval.yaml"
    path.write_text(yaml_text)
    result = runner.invoke(app, ["eval", "--model", "gpt2", "--config", str(path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and str(path) in result.output and message in result.output


def test_cli_values_are_range_checked_too():
    result = runner.invoke(app, ["eval", "--model", "gpt2", "--temperature", "-1"])
    assert result.exit_code == 2 and result.output == "error: --temperature: must be >= 0, got -1.0\n"


def _example_value(name: str, tp: typing.Any, default: typing.Any) -> tuple[list[str], typing.Any]:
    """A non-default, valid value for a field: (as typed on the command line, as Python)."""
    tp, _ = C.unwrap_optional(tp)
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        choice = typing.get_args(tp)[1]
        return [C.option_name(name), str(choice)], choice
    if tp is bool:  # the flag that flips the default
        return ([f"--no-{name.replace('_', '-')}"], False) if default else ([C.option_name(name)], True)
    opt = C.option_name(name)
    if tp is int:
        return ([opt, "3"], 3) if name.startswith("min_") else ([opt, "9"], 9)
    if tp is float:
        return [opt, "0.25"], 0.25
    if origin is list:
        return ([opt, "3"], [3]) if typing.get_args(tp)[0] is int else ([opt, "x.y=1"], ["x.y=1"])
    if origin is dict:
        return [opt, '{"a": 1}'], {"a": 1}
    text = "org/model-b" if name in ("model", "tokenizer") else "{problem}?"
    return [opt, text], text


def _required(stage: str, skip: str) -> dict[str, typing.Any]:
    need = {"eval": {"model": "gpt2", "n": 9}, "ssft": {"model": "gpt2", "trace_sets": "d", "batch_size": 81},
            "gfpo": {"model": "gpt2"}, "collect": {"task": "t", "teachers": "x"},
            "filter": {"traces": "t", "task": "q", "max_traces": 9, "tokenizer": "gpt2", "max_tokens": 5}}.get(stage, {})
    return {k: v for k, v in need.items() if k != skip}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_field_is_reachable_from_the_cli_and_from_yaml(stage, tmp_path):
    import typer
    import yaml

    cls = STAGES[stage]
    command = typer.main.get_command(app).commands[stage]  # type: ignore[attr-defined]
    hints = C.field_types(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("argument"):
            continue
        typed, value = _example_value(f.name, hints[f.name], getattr(cls(), f.name))
        assert getattr(cls(), f.name) != value, f"pick another example for {stage}.{f.name}"
        required = _required(stage, f.name)
        # CLI: the generated option parses into the field's value.
        positional = POSITIONAL.get(stage)
        args = [a for k, v in required.items() for a in (C.option_name(k), str(v))] + typed
        if positional:
            args = ([*positional[1]] if isinstance(positional[1], list) else [positional[1]]) + args
            required = {**required, positional[0]: positional[1]}
        ctx = command.make_context(stage, args)
        given = {k: v for k, v in ctx.params.items() if k != "config" and (k in required or k == f.name)}
        assert getattr(C.build_config(cls, ("", given)), f.name) == value, f"{stage}.{f.name} via the CLI"
        # YAML: the same key in a file.
        path = tmp_path / f"{stage}-{f.name}.yaml"
        path.write_text(yaml.safe_dump({**required, f.name: value}))
        assert getattr(C.config_from_yaml(cls, path), f.name) == value, f"{stage}.{f.name} via YAML"


def test_help_keeps_square_brackets_and_shows_defaults():
    result = runner.invoke(app, ["eval", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "pip install 'forkctl[vllm]'" in result.output
    assert "[default: 0.6]" in result.output and "[default: transformers]" in result.output
    assert "inspect" not in runner.invoke(app, ["--help"]).output or "inspect" in [c.name for c in
                                                                                   app.registered_commands]


def test_forkctl_help_imports_no_torch():
    code = "import sys; from forkctl.cli import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    proc = subprocess.run([sys.executable, "-m", "forkctl", "eval", "--help"], capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == 0 and "import time:" in proc.stderr
    assert " torch\n" not in proc.stderr and "| torch" not in proc.stderr


def test_derive_seed_is_stable_and_spreads():
    assert C.derive_seed(0, "q1", 3) == C.derive_seed(0, "q1", 3)
    assert len({C.derive_seed(0, f"q{i}") for i in range(1000)}) == 1000
    assert 0 <= C.derive_seed("x") < 2 ** 31


def test_fingerprint_changes_are_named():
    assert C.fingerprint_changes({"temperature": 0.6, "n": 1}, {"temperature": 0.7, "n": 1}) == \
        ["temperature 0.6 -> 0.7"]

"""The example files stay valid: every stage config in examples/gpu builds (typed and range-checked), and every
pipeline plans (a dry run: nothing is loaded, nothing runs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from forkctl import config as C
from forkctl.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
STAGE_FILES = {"collect.yaml": C.CollectConfig, "filter.yaml": C.FilterConfig, "ssft.yaml": C.SSFTConfig,
               "gfpo.yaml": C.GFPOConfig, "eval_pass1.yaml": C.EvalConfig, "eval_native.yaml": C.EvalConfig}


@pytest.mark.parametrize("name", sorted(STAGE_FILES))
def test_gpu_stage_configs_build(name):
    cfg = C.build_config(STAGE_FILES[name], (name, C.load_yaml(EXAMPLES / "gpu" / name)), validate=False)
    assert cfg is not None


@pytest.mark.parametrize("pipeline", ["toy/pipeline.yaml", "gpu/single_gpu.yaml", "smollm2/pipeline.yaml"])
def test_pipelines_plan(pipeline, tmp_path):
    result = CliRunner().invoke(app, ["run", str(EXAMPLES / pipeline), "--dry-run", "--run-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "never run here" in result.output

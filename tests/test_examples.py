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


@pytest.mark.slow
@pytest.mark.timeout(2400)  # ~3.5 min on 2 idle cores; a machine shared with other torch jobs can be 5x slower
def test_the_embedded_toy_shows_specialisation_collapse_and_gfpo_gain(tmp_path):
    """`forkctl run examples/toy/pipeline.yaml` as the README runs it (~3 min on 2 idle cores): after SSFT each
    token is one walk, after mixed SFT the tokens carry no strategy, and GFPO's choice beats the model's own."""
    import json

    result = CliRunner().invoke(app, ["run", str(EXAMPLES / "toy" / "pipeline.yaml"), "--run-dir", str(tmp_path),
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    assert "strategy by token" in result.output and "GFPO over steps" in result.output  # the closing tables

    def report(name: str) -> dict:
        out = CliRunner().invoke(app, ["inspect", str(tmp_path / name), "--format", "json"])
        assert out.exit_code == 0, out.output
        return json.loads(out.output)

    ssft, mixed = report("eval_ssft"), report("eval_mixed")
    assert ssft["diversity"]["nmi"] > 0.9 and mixed["diversity"]["nmi"] < 0.1
    before, after = report("eval_ssft_policy"), report("eval_gfpo")
    assert before["metrics"]["accuracy"] < 0.65 and after["metrics"]["accuracy"] > 0.9
    # a per-question choice, not one token for every question
    chosen = [row for fork, row in after["per_fork"].items() if fork != "policy"]
    assert all(0.3 < row["chosen_rate"] < 0.7 and row["accuracy"] > 0.9 for row in chosen)

"""``forkctl run PIPELINE.yaml``: the stages a pipeline file lists, in order, under one run folder.

A pipeline file::

    run_dir: runs/toy
    stages:
      base:    {stage: synthetic-data, questions: 1, model_out: ${run_dir}/base}
      collect: {task: synthetic-train, teachers: ${teachers}, limit: 200}
      filter:  {traces: ${collect}, task: synthetic-train}
      ssft:    {model: ${base.model_out}, trace_sets: ${filter}}

Each stage section has the keys of that stage's options (declared once in ``config.py``); ``stage`` names its
kind when the section's name is not one. ``${name}`` is an earlier stage's output (its ``out``), ``${name.key}``
any of its resolved options, ``${run_dir}`` the run folder; ``out`` defaults to ``<run_dir>/<name>`` (``.jsonl``
for the stages that write one file).

Skipping is DVC's idea: a stage's fingerprint covers its kind, its resolved options (a reference counts as the
identity of the run that produced it, an existing input file as its size and mtime) and nothing else; a stage
whose fingerprint equals the one it completed under is skipped. A stage whose fingerprint changed runs again from
scratch (``overwrite``), which gives it a new output identity, so every stage that uses it runs again too. A stage
that was interrupted (started under the same fingerprint, never completed) resumes as it does alone. State lives
in ``<run_dir>/.forkctl/<name>.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from forkctl import config as C
from forkctl import console
from forkctl.errors import UserError

FILE_OUTPUT = {"collect", "filter", "synthetic-data"}
ALWAYS_RUN = {"inspect"}  # prints tables from other stages' outputs: cheap, and a rerun should show them
STATE_DIR = ".forkctl"
_REF = re.compile(r"\$\{([A-Za-z0-9_.-]+)\}")


@dataclass
class Stage:
    name: str
    kind: str
    options: dict[str, Any]  # as written, with ${...} references


@dataclass
class Plan:
    stage: Stage
    action: str  # "skip", "run", "resume"
    reason: str
    config: Any = None
    fingerprint: str = ""
    material: dict[str, Any] = dataclasses.field(default_factory=dict)  # what the fingerprint hashes


def load_pipeline(path: str | Path, overrides: list[str]) -> tuple[dict[str, Any], list[Stage]]:
    path = Path(path)
    data = C.load_yaml(path)
    unknown = set(data) - {"run_dir", "stages"}
    if unknown:
        raise UserError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}; expected run_dir, stages")
    sections = data.get("stages")
    if not isinstance(sections, dict) or not sections:
        raise UserError(f"{path}: 'stages' must be a mapping of stage names to their options")
    stages = []
    for name, options in sections.items():
        options = dict(options or {})
        if not isinstance(options, dict):
            raise UserError(f"{path}: stages.{name}: expected a mapping of options")
        stages.append(Stage(str(name), str(options.pop("stage", name)), options))
    _apply_sets(path, stages, overrides)
    return data, stages


def _apply_sets(path: Path, stages: list[Stage], overrides: list[str]) -> None:
    by_name = {s.name: s for s in stages}
    for item in overrides:
        key, sep, value = item.partition("=")
        name, dot, option = key.partition(".")
        if not sep or not dot or not option:
            raise UserError(f"--set {item!r}: expected stage.key=value")
        if name not in by_name:
            raise UserError(f"--set {item!r}: no stage {name!r} in {path} (stages: {', '.join(by_name)})")
        by_name[name].options[option] = yaml.safe_load(value)


class Pipeline:
    """Resolves references and fingerprints, decides what runs, and runs it."""

    def __init__(self, cfg: C.RunConfig, stage_kinds: dict[str, tuple[type, Callable[[Any], Any]]]) -> None:
        self.cfg, self.kinds = cfg, stage_kinds
        data, self.stages = load_pipeline(cfg.pipeline, cfg.set)
        run_dir = cfg.run_dir or data.get("run_dir")
        if not run_dir:
            raise UserError(f"{cfg.pipeline}: no run_dir (set it in the file or pass --run-dir)")
        self.run_dir = Path(str(run_dir))
        self.state_dir = self.run_dir / STATE_DIR
        names = [s.name for s in self.stages]
        for bad in set(cfg.force) - set(names) | ({cfg.from_stage} - set(names) if cfg.from_stage else set()):
            raise UserError(f"no stage {bad!r} in {cfg.pipeline} (stages: {', '.join(names)})")
        for s in self.stages:
            if s.kind not in self.kinds:
                raise UserError(f"{cfg.pipeline}: stage {s.name}: unknown kind {s.kind!r} (one of "
                                f"{', '.join(sorted(self.kinds))})")
        self.resolved: dict[str, Any] = {}  # name -> config
        self.output_ids: dict[str, str | None] = {}  # name -> identity of the run that made its output

    # -- resolving -------------------------------------------------------------------------------

    def _resolve(self, stage: Stage) -> tuple[Any, dict[str, Any]]:
        """The stage's config with references filled in, and the fingerprint material."""
        cls = self.kinds[stage.kind][0]
        where = f"{self.cfg.pipeline}: stages.{stage.name}"
        options = dict(stage.options)
        if "out" not in options and "out" in {f.name for f in dataclasses.fields(cls)}:
            options["out"] = str(self.run_dir / (stage.name + (".jsonl" if stage.kind in FILE_OUTPUT else "")))
        if "quiet" in {f.name for f in dataclasses.fields(cls)}:
            options.setdefault("quiet", self.cfg.quiet)
        refs: dict[str, str | None] = {}
        written = dict(options)
        options = {k: self._fill(v, where, refs) for k, v in options.items()}
        cfg = C.build_config(cls, (where, options), validate=False)  # checked when it runs
        material = {"kind": stage.kind, "options": _fingerprint_options(C.to_jsonable(cfg)),
                    "upstream": refs, "inputs": self._input_files(written)}
        return cfg, material

    def _input_files(self, written: dict[str, Any]) -> dict[str, Any]:
        """The identity of every existing file or folder an option names from outside the pipeline (not a
        ${reference}, nothing under the run folder: those are the pipeline's own outputs)."""
        out = {}
        run_dir = self.run_dir.resolve()
        for key, value in written.items():
            if not isinstance(value, str) or "${" in value or "\n" in value or len(value) > 4096:
                continue
            path = Path(value)
            if path.exists() and run_dir not in path.resolve().parents and path.resolve() != run_dir:
                out[key] = C.file_identity(value)
        return out

    def _fill(self, value: Any, where: str, refs: dict[str, str | None]) -> Any:
        if isinstance(value, list):
            return [self._fill(v, where, refs) for v in value]
        if not isinstance(value, str):
            return value

        def one(m: re.Match) -> str:
            name, _, key = m.group(1).partition(".")
            if name == "run_dir" and not key:
                return str(self.run_dir)
            if name not in self.resolved:
                raise UserError(f"{where}: ${{{m.group(1)}}} refers to no earlier stage")
            refs[name] = self.output_ids.get(name)
            field = key or "out"
            if not hasattr(self.resolved[name], field):
                raise UserError(f"{where}: ${{{m.group(1)}}}: stage {name} has no option {field!r}")
            return str(getattr(self.resolved[name], field))

        return _REF.sub(one, value)

    # -- deciding --------------------------------------------------------------------------------

    def plan(self) -> list[Plan]:
        """Every stage's action, decided as if nothing ran before it (a dry run)."""
        self.resolved, self.output_ids = {}, {}
        return [self._decide(stage) for stage in self.stages]

    def _decide(self, stage: Stage) -> Plan:
        """Resolve ``stage`` against the stages before it and say whether it is skipped, run or resumed."""
        cfg, material = self._resolve(stage)
        self.resolved[stage.name] = cfg
        fp = hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16]
        state = self._state(stage.name)
        if self._at_or_after_from(stage) or stage.name in self.cfg.force:
            action, reason = "run", "forced (--from)" if self._at_or_after_from(stage) else "forced (--force)"
        elif any(v is None for v in material["upstream"].values()):
            action, reason = "run", "an input stage runs first"
        elif stage.kind in ALWAYS_RUN:
            action, reason = "run", "a report: always runs"
        elif state is None:
            action, reason = "run", "never run here"
        elif state["fingerprint"] != fp:
            action, reason = "run", f"changed: {_changed(state.get('material', {}), material)}"
        elif state["status"] != "done":
            action, reason = "resume", "interrupted"
        else:
            action, reason = "skip", "unchanged since it completed"
        self.output_ids[stage.name] = state["output_id"] if action == "skip" and state else None
        return Plan(stage, action, reason, cfg, fp, material)

    def _at_or_after_from(self, stage: Stage) -> bool:
        if self.cfg.from_stage is None:
            return False
        names = [s.name for s in self.stages]
        return names.index(stage.name) >= names.index(self.cfg.from_stage)

    def _state(self, name: str) -> dict[str, Any] | None:
        path = self.state_dir / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def _write_state(self, name: str, **state: Any) -> None:
        from forkctl.records import write_json

        write_json(self.state_dir / f"{name}.json", state)

    # -- running ---------------------------------------------------------------------------------

    def run(self) -> list[Plan]:
        if self.cfg.dry_run:
            plans = self.plan()
            console.show(console.table(f"forkctl run {self.cfg.pipeline} (dry run)", ["#", "stage", "kind",
                                       "action", "why"], [[i + 1, p.stage.name, p.stage.kind, p.action, p.reason]
                                                          for i, p in enumerate(plans)], right=(0,)))
            return plans
        done: list[Plan] = []
        self.resolved, self.output_ids = {}, {}
        with ExitStack() as services:
            for i, stage in enumerate(self.stages):
                plan = self._decide(stage)  # one at a time: the identity of what just ran is known by now
                done.append(plan)
                head = f"[{i + 1}/{len(self.stages)}] {stage.name} ({stage.kind})"
                if plan.action == "skip":
                    console.note(f"{head}: skipped, {plan.reason}")
                    self._start_service(plan, services)
                    continue
                console.note(f"{head}: {'resuming' if plan.action == 'resume' else 'running'} ({plan.reason})")
                start = time.monotonic()
                self._execute(plan, services)
                console.note(f"{head}: done in {time.monotonic() - start:.0f} s")
        return done

    def _execute(self, plan: Plan, services: ExitStack) -> None:
        cfg, name = plan.config, plan.stage.name
        fields = {f.name for f in dataclasses.fields(cfg)}
        if plan.action == "run" and "overwrite" in fields:
            cfg.overwrite = True  # the pipeline's settings changed: start again rather than refuse
            _clear_training_output(cfg)
        if plan.action == "resume" and "resume" in fields:
            cfg.resume = _has_checkpoint(Path(cfg.out))
        if hasattr(cfg, "validate"):
            cfg.validate()
        material = plan.material
        self._write_state(name, fingerprint=plan.fingerprint, status="running", material=material, output_id=None)
        if self._start_service(plan, services):
            output_id = plan.fingerprint
        else:
            self.kinds[plan.stage.kind][1](cfg)
            output_id = f"{plan.fingerprint}-{time.time_ns()}"
        self._write_state(name, fingerprint=plan.fingerprint, status="done", material=material, output_id=output_id)
        self.output_ids[name] = output_id

    def _start_service(self, plan: Plan, services: ExitStack) -> bool:
        """Services (teachers on 127.0.0.1) run for the rest of the pipeline, even when 'skipped': a later
        stage may need them. Returns whether the stage was a service."""
        start = SERVICES.get(plan.stage.kind)
        if start is None:
            return False
        if hasattr(plan.config, "validate"):
            plan.config.validate()
        start(plan.config, services)
        return True


def _serve_synthetic_teachers(cfg: Any, services: ExitStack) -> None:
    from forkctl.synthetic_teachers import TeachersServer, write_teachers_file

    server = services.enter_context(TeachersServer())
    write_teachers_file(cfg.out, server.base_url, cfg.models, cfg.temperature)


def _serve_model_teachers(cfg: Any, services: ExitStack) -> None:
    """`transformers serve` of a model folder; one teacher per temperature, all the same model."""
    from forkctl.testing import TransformersServer

    log = Path(cfg.out).with_suffix(".server.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    server = TransformersServer(cfg.model, log, threads=cfg.threads).start(timeout_s=600)
    services.callback(server.stop)
    teachers = [{"name": f"t{t:g}", "base_url": server.base_url, "model": str(cfg.model),
                 "params": {"temperature": t, "max_tokens": cfg.max_tokens}} for t in cfg.temperatures]
    Path(cfg.out).write_text(yaml.safe_dump({"teachers": teachers}, sort_keys=False))


SERVICES: dict[str, Callable[[Any, ExitStack], None]] = {"synthetic-teachers": _serve_synthetic_teachers,
                                                        "served-teachers": _serve_model_teachers}


def _fingerprint_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options that decide a stage's output (not how it reports progress, nor whether it may resume)."""
    return {k: v for k, v in options.items() if k not in ("quiet", "overwrite", "resume")}


def _changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    parts = []
    old_opts, new_opts = old.get("options", {}), new.get("options", {})
    parts += C.fingerprint_changes(old_opts, new_opts)
    if old.get("upstream") != new.get("upstream"):
        parts.append("an input stage's output (" + ", ".join(sorted(new.get("upstream", {}))) + ")")
    if old.get("inputs") != new.get("inputs"):
        parts.append("an input file (" + ", ".join(sorted(set(old.get("inputs", {})) | set(new.get("inputs", {}))))
                     + ")")
    return "; ".join(parts) or "the stage kind"


def _has_checkpoint(out: Path) -> bool:
    from forkctl.forks import last_complete_checkpoint

    return out.is_dir() and (last_complete_checkpoint(out) is not None or (out / "gfpo_state.pt").exists())


def _clear_training_output(cfg: Any) -> None:
    """A training stage rerun under new settings starts from an empty folder (its checkpoints are stale)."""
    import shutil

    out = Path(getattr(cfg, "out", ""))
    if hasattr(cfg, "resume") and out.is_dir():
        shutil.rmtree(out)

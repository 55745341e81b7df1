"""``forkctl inspect``: what the forking tokens do, from the records the other stages wrote.

``run_inspect(runs)`` recognises each RUN directory by the file it holds: an eval output (``samples.jsonl``,
``metrics.json``), an SSFT output (``matching.jsonl``, ``ssft_summary.json``) or a GFPO output
(``gfpo_log.jsonl``); a path to one of those files stands for its folder. For each run it builds a JSON-able report
(the maths is :mod:`forkctl.analysis`'s), then renders that report as rich tables, markdown, CSV or JSON, and
optionally writes PNG plots. Several eval runs are also compared with the first one.

Tables are built here as plain rows (:class:`Table`) so that every output format shows the same numbers; the rich
rendering is self-contained in this module until the project has one place where output is styled.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forkctl import analysis as A
from forkctl.errors import UserError
from forkctl.records import Sample, read_json_lines, read_records

FORMATS = ("table", "markdown", "csv", "json")
EVAL_FILE, METRICS_FILE = "samples.jsonl", "metrics.json"
MATCHING_FILE, SSFT_SUMMARY_FILE = "matching.jsonl", "ssft_summary.json"
GFPO_FILE = "gfpo_log.jsonl"
MAX_ROWS = 12          # rows of a long table (steps, gains) shown unless full=True
MAX_QUESTION_ROWS = 20  # per-question coverage matrix shown in full up to this many questions
EXCERPT_CHARS = 36


# --------------------------------------------------------------------------------------------------
# Loading


@dataclass
class Run:
    """One RUN argument, loaded: which kinds of output its folder holds and their records."""

    path: Path
    label: str
    kinds: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    matching: list[dict[str, Any]] = field(default_factory=list)
    ssft_summary: dict[str, Any] = field(default_factory=dict)
    gfpo: list[dict[str, Any]] = field(default_factory=list)

    @property
    def policy(self) -> bool:
        """The model chose each sample's token (``eval --fork policy``)."""
        return "policy" in (self.config.get("fork"), self.config.get("fork_mode"))


def load_run(arg: str, label: str) -> Run:
    path = Path(arg)
    if path.is_file() and path.name in (EVAL_FILE, METRICS_FILE, MATCHING_FILE, SSFT_SUMMARY_FILE, GFPO_FILE):
        path = path.parent
    if not path.exists():
        raise UserError(f"{arg}: no such directory")
    if not path.is_dir():
        raise UserError(f"{arg}: not a directory (give an eval, SSFT or GFPO output directory)")
    run = Run(path=path, label=label)
    if (path / EVAL_FILE).exists():
        run.kinds.append("eval")
        run.samples = read_records(path / EVAL_FILE, Sample)
        if not run.samples:
            raise UserError(f"{path / EVAL_FILE}: no samples")
        doc = _read_json(path / METRICS_FILE) if (path / METRICS_FILE).exists() else {}
        run.config, run.metrics = doc.get("config") or {}, doc.get("metrics") or {}
    logs = sorted(path.glob("matching.rank*.jsonl"))  # other processes' questions of a multi-process run
    if (path / MATCHING_FILE).exists() or logs:
        run.kinds.append("ssft")
        for log in ([path / MATCHING_FILE] if (path / MATCHING_FILE).exists() else []) + logs:
            run.matching.extend(read_json_lines(log))
        if (path / SSFT_SUMMARY_FILE).exists():
            run.ssft_summary = _read_json(path / SSFT_SUMMARY_FILE)
    if (path / GFPO_FILE).exists():
        run.kinds.append("gfpo")
        run.gfpo = read_json_lines(path / GFPO_FILE)
    if not run.kinds:
        raise UserError(f"{arg}: not an eval, SSFT or GFPO output (no {EVAL_FILE}, {MATCHING_FILE} or {GFPO_FILE})")
    return run


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


# --------------------------------------------------------------------------------------------------
# Reports: everything computed, JSON-able


def eval_report(run: Run, question: str | None = None) -> dict[str, Any]:
    questions = A.by_question(run.samples)
    n_min = A.sample_counts(questions)
    ks = [k for k in run.config.get("k") or [1] if isinstance(k, int)] + [n_min]
    metrics: dict[str, Any] = {"accuracy": A.group_stats(run.samples)["accuracy"],
                               "num_questions": len(questions), "num_samples": len(run.samples),
                               **A.pass_cons(questions, ks)}
    native = None if run.policy else A.native_consensus(questions)  # policy: tokens are chosen, not spread evenly
    if native is not None:
        metrics["cons@native"] = native
    report = {
        "fork_mode": run.config.get("fork_mode") or run.config.get("fork") or _guess_mode(run.samples),
        "task": run.config.get("task") or run.config.get("benchmark"),
        "model": run.config.get("model"),
        "per_fork": A.per_fork_stats(run.samples, policy=run.policy),
        "metrics": metrics,
        "pass_curve": A.pass_curve(questions),
        "coverage": A.coverage(questions),
        "diversity": A.diversity(questions),
    }
    if question is not None and question in questions:
        report["question"] = question_report(question, questions[question])
    return report


def _guess_mode(samples: list[Sample]) -> str:
    forks = {s.fork for s in samples}
    if forks == {None}:
        return "none"
    return f"think{forks.pop()}" if len(forks) == 1 else "all"


def question_report(qid: str, samples: list[Sample]) -> dict[str, Any]:
    """Every sample of one question, grouped by token (tokens in order, samples in order)."""
    ordered = sorted(samples, key=lambda s: (A.key_order(A.fork_key(s.fork)), s.sample))
    return {"question_id": qid, "samples": [
        {"fork": A.fork_key(s.fork), "sample": s.sample, "answer": s.answer, "correct": s.correct,
         "num_tokens": s.num_tokens, "finish_reason": s.finish_reason, "text": s.text} for s in ordered]}


def ssft_report(run: Run) -> dict[str, Any]:
    out = A.matching_stats(run.matching)
    keep = ("global_step", "train_loss", "matching", "num_forks")
    out["summary"] = {k: run.ssft_summary[k] for k in keep if k in run.ssft_summary}
    return out


def build_report(run: Run, question: str | None) -> dict[str, Any]:
    report: dict[str, Any] = {"run": str(run.path), "label": run.label, "kinds": list(run.kinds)}
    if "eval" in run.kinds:
        report.update(eval_report(run, question))
    if "ssft" in run.kinds:
        report["ssft"] = ssft_report(run)
    if "gfpo" in run.kinds:
        report["gfpo"] = A.gfpo_series(run.gfpo)
    return report


def compare_report(base: Run, base_report: dict[str, Any], other: Run, other_report: dict[str, Any]
                   ) -> dict[str, Any]:
    """Metrics of ``other`` next to ``base`` with their differences, and per-question gains and losses."""
    a, b = comparable_metrics(base_report), comparable_metrics(other_report)
    metrics = {name: {"base": a.get(name), "other": b.get(name),
                      "delta": None if a.get(name) is None or b.get(name) is None else b[name] - a[name]}
               for name in _union(a, b)}
    return {"base": base.label, "base_run": str(base.path), "metrics": metrics,
            "questions": A.question_gains(A.by_question(base.samples), A.by_question(other.samples))}


def comparable_metrics(report: dict[str, Any]) -> dict[str, float | None]:
    """The numbers a comparison shows, by row name (per-token rows named by token)."""
    m = report["metrics"]
    out: dict[str, float | None] = {"accuracy": m["accuracy"]}
    out.update({k: v for k, v in m.items() if k.startswith(("pass@", "cons@"))})
    for key, row in report["per_fork"].items():
        out[f"acc {token_label(key)}"] = row["accuracy"]
    for key, row in report["per_fork"].items():
        out[f"len {token_label(key)}"] = row["mean_tokens"]
    d = report["diversity"]
    out["disagree across"], out["disagree within"] = d["disagree_across"], d["disagree_within"]
    out["similar across"], out["similar within"] = d["similar_across"], d["similar_within"]
    if "nmi" in d:
        out["NMI strategy"] = d["nmi"]
    return out


def _union(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return list(a) + [k for k in b if k not in a]


def token_label(key: str) -> str:
    return key if key in ("none", "policy") else f"<think{key}>"


# --------------------------------------------------------------------------------------------------
# Tables: plain rows with a kind per column, rendered by every format alike


@dataclass
class Col:
    name: str
    kind: str = "text"  # text | int | pct (a rate in percent) | f1 f2 f3 (decimals)
    signed: bool = False  # differences: +0.125


@dataclass
class Table:
    name: str      # machine name (the CSV's "table" column)
    title: str
    columns: list[Col]
    rows: list[list[Any]]
    notes: list[str] = field(default_factory=list)
    blocks: list[tuple[str, str]] = field(default_factory=list)  # (heading, whole text) shown after the table
    row_kinds: list[str | None] = field(default_factory=list)  # per row: a kind for all its numbers, else None

    def cells(self, row_index: int) -> list[str]:
        """A row's formatted cells (the row's own kind, where it has one, wins over the columns')."""
        row = self.rows[row_index]
        own = self.row_kinds[row_index] if row_index < len(self.row_kinds) else None
        return [fmt_value(v, c.kind if own is None or k == 0 else own, c.signed)
                for k, (v, c) in enumerate(zip(row, self.columns))]


def fmt_value(value: Any, kind: str, signed: bool = False) -> str:
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100 * value:.1f}"
    if kind in ("f1", "f2", "f3"):
        return f"{value:{'+' if signed else ''}.{kind[1]}f}"
    if kind == "int":
        return str(int(value))
    return str(value)


def _title(report: dict[str, Any], what: str, several: bool) -> str:
    return f"{report['label']} · {what}" if several else what


def per_fork_table(report: dict[str, Any], several: bool) -> Table:
    policy = any("chosen_rate" in r for r in report["per_fork"].values())
    cols = [Col("token"), Col("n", "int"), Col("acc %", "pct"), Col("mean", "f1"), Col("med", "f1"),
            Col("p90", "int"), Col("trunc %", "pct"), Col("no-ans %", "pct"), Col("ans/q", "f2")]
    if policy:
        cols.insert(2, Col("chosen %", "pct"))
    rows = []
    for key, r in report["per_fork"].items():
        row = [token_label(key), r["n"], r["accuracy"], r["mean_tokens"], r["median_tokens"], r["p90_tokens"],
               r["truncation_rate"], r["no_answer_rate"], r["distinct_answers"]]
        if policy:
            row.insert(2, r.get("chosen_rate"))
        rows.append(row)
    notes = ["length in generated tokens (mean, median, p90); ans/q: distinct answers per question"]
    if policy:
        notes.append("policy: the model chose each sample's token; a token's acc % is its accuracy when chosen")
    return Table("per_token", _title(report, f"per token · fork {report['fork_mode']}", several), cols, rows, notes)


def passk_table(report: dict[str, Any], several: bool) -> Table:
    m = report["metrics"]
    ks = sorted({int(k.split("@")[1]) for k in m if k.startswith("pass@")})
    rows = [[k, m[f"pass@{k}"], m[f"cons@{k}"]] for k in ks]
    notes = [f"{m['num_questions']} questions, {m['num_samples']} samples, accuracy {100 * m['accuracy']:.1f}%"]
    if "cons@native" in m:
        notes.append(f"cons@native (vote over one sample of each token): {100 * m['cons@native']:.1f}%")
    return Table("pass_cons", _title(report, "pass@k and cons@k", several),
                 [Col("k", "int"), Col("pass@k %", "pct"), Col("cons@k %", "pct")], rows, notes)


def coverage_tables(report: dict[str, Any], several: bool, full: bool) -> list[Table]:
    cov = report["coverage"]
    q = cov["questions"]
    rows = [[token_label(k), r["solves"], r["solves"] / q if q else 0.0, r["only"]] for k, r in cov["per_fork"].items()]
    lost = cov["lost_by_vote"]
    notes = [f"some token solves {cov['any']}/{q} questions; the majority vote solves {cov['vote']}/{q}",
             f"lost by the vote ({len(lost)}): {_id_list(lost, full)}" if lost else "lost by the vote: none"]
    tables = [Table("coverage", _title(report, "coverage: questions each token solves", several),
                    [Col("token"), Col("solves", "int"), Col("of all %", "pct"), Col("only it", "int")], rows,
                    notes)]
    if full or q <= MAX_QUESTION_ROWS:
        tables.append(question_matrix(report, several))
    return tables


def question_matrix(report: dict[str, Any], several: bool) -> Table:
    """One row per question: each token's correct/samples and the vote's verdict."""
    cov = report["coverage"]
    keys = list(cov["per_fork"])
    compact = len(keys) > 5
    cols = [Col("question")] + [Col(k if compact else token_label(k)) for k in keys] + [Col("vote")]
    rows = []
    for qid, entry in cov["per_question"].items():
        cells = [f"{c}/{n}" if (c, n) != (0, 0) else "-" for c, n in (entry["by_fork"].get(k, [0, 0]) for k in keys)]
        rows.append([qid, *cells, "ok" if entry["vote"] else "wrong"])
    return Table("per_question", _title(report, "per question: correct/samples by token", several), cols, rows)


def diversity_tables(report: dict[str, Any], several: bool) -> list[Table]:
    d = report["diversity"]
    rows = [["answer disagreement", d["disagree_across"], d["disagree_within"]],
            [f"text similarity ({d['ngram']}-gram Jaccard)", d["similar_across"], d["similar_within"]]]
    notes = ["over pairs of samples of one question; tokens that collapsed to one mode show across ≈ within"]
    tables = [Table("diversity", _title(report, "diversity across tokens", several),
                    [Col("pairs of samples"), Col("across tokens", "f3"), Col("within a token", "f3")], rows, notes)]
    if "strategy_by_fork" in d:
        tables.append(source_matrix("strategy_by_token", _title(report, "strategy by token", several),
                                    d["strategy_by_fork"], "strategy", f"NMI(token; strategy) = {d['nmi']:.3f}"))
    return tables


def source_matrix(name: str, title: str, matrix: dict[str, dict[str, int]], what: str, note: str) -> Table:
    """Counts with a row per source (strategy, teacher) and a column per token: narrow however long the names."""
    keys = list(matrix)
    sources = sorted({s for row in matrix.values() for s in row})
    compact = len(keys) > 5
    cols = [Col(what)] + [Col(k if compact else token_label(k), "int") for k in keys]
    rows = [[s, *(matrix[k].get(s, 0) for k in keys)] for s in sources]
    return Table(name, title, cols, rows, [note])


def question_table(report: dict[str, Any], several: bool, full: bool) -> Table:
    q = report["question"]
    cols = [Col("token"), Col("#", "int"), Col("answer"), Col("verdict"), Col("tokens", "int"), Col("end"),
            Col("text (end)")]
    rows, blocks = [], []
    for s in q["samples"]:
        verdict = {True: "correct", False: "wrong", None: "unjudged"}[s["correct"]]
        rows.append([token_label(s["fork"]), s["sample"], s["answer"], verdict, s["num_tokens"], s["finish_reason"],
                     excerpt(s["text"])])
        blocks.append((f"{token_label(s['fork'])} sample {s['sample']} · {verdict} · {s['num_tokens']} tokens",
                       s["text"]))
    table = Table("question", _title(report, f"question {q['question_id']}", several), cols, rows)
    if full:  # whole texts below the table: a table column would fold them into a narrow strip
        table.blocks = blocks
    return table


def excerpt(text: str, chars: int = EXCERPT_CHARS) -> str:
    """The end of a text on one line (where the answer is): ``...`` marks a cut."""
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= chars else "..." + flat[-(chars - 3):]


def ssft_tables(report: dict[str, Any], several: bool, full: bool) -> list[Table]:
    s = report["ssft"]
    modes = ", ".join(s["matching"]) or "?"
    summary = s["summary"]
    head = f"{s['questions']} questions, {s['steps']} steps logged, matching {modes}"
    if "train_loss" in summary:
        head += f"; final train loss {summary['train_loss']:.4f}"
    nmi_note = f"NMI(token; source) = {s['nmi']:.3f}" if s["nmi"] is not None else "no assignments logged"
    tables = [source_matrix("token_source", _title(report, "SSFT: source by token (last assignment)", several),
                            s["token_source"], "source", f"{head}; {nmi_note}")]
    rate = s["switch_rate"]
    rows = [[w["visit"], w["questions"], w["changed"], w["changed"] / w["questions"]] for w in s["switches"]]
    rows = rows if full else _thin(rows)
    notes = [f"{s['questions_ever_changed']}/{s['questions']} questions changed assignment at least once"
             + (f"; {100 * rate:.1f}% of revisits changed" if rate is not None else "")]
    tables.append(Table("switches", _title(report, "SSFT: assignment changes between visits (epochs)", several),
                        [Col("visit", "int"), Col("questions", "int"), Col("changed", "int"),
                         Col("changed %", "pct")], rows, notes))
    if s["cost_by_step"]:
        steps = [c["step"] for c in s["cost_by_step"]]
        ranges = A.bins(len(steps), len(steps) if full else MAX_ROWS)
        costs = A.binned_mean([c["cost"] for c in s["cost_by_step"]], ranges)
        rows = [[_step_range(steps, r), c] for r, c in zip(ranges, costs)]
        tables.append(Table("matched_cost", _title(report, "SSFT: matched cost over steps", several),
                            [Col("steps"), Col("mean matched cost", "f3")], rows,
                            ["mean over a step's questions of the mean C[token, trace] of the assignment (NLL)"]))
    return tables


def gfpo_table(report: dict[str, Any], several: bool, full: bool) -> Table:
    g = report["gfpo"]
    s = g["series"]
    ranges = A.bins(g["steps"], g["steps"] if full else MAX_ROWS)
    reward, ent = A.binned_mean(s["reward_mean"], ranges), A.binned_mean(s["pi_entropy"], ranges)
    zero, trunc = A.binned_mean(s["zero_variance_frac"], ranges), A.binned_mean(s["truncated_frac"], ranges)
    pis = A.binned_vectors(s["pi_mean"], ranges)
    rows = [[_step_range(s["step"], r), rw, " ".join(f"{p:.2f}" for p in pi), h, z, t]
            for r, rw, pi, h, z, t in zip(ranges, reward, pis, ent, zero, trunc)]
    notes = ["each row: the mean over its steps; mean π: π(token | question) of tokens 1..N averaged over questions; "
             "H(π): mean entropy of π (nats)"]
    sm = g["summary"]
    if sm:
        notes.append(f"reward {sm['reward_mean']['first']:.3f} -> {sm['reward_mean']['last']:.3f}, "
                     f"H(π) {sm['pi_entropy']['first']:.3f} -> {sm['pi_entropy']['last']:.3f}, "
                     f"zero-variance {100 * sm['zero_variance_frac']['first']:.1f}% -> "
                     f"{100 * sm['zero_variance_frac']['last']:.1f}%")
    return Table("gfpo", _title(report, "GFPO over steps", several),
                 [Col("steps"), Col("reward", "f3"), Col("mean π"), Col("H(π)", "f3"), Col("zero-var %", "pct"),
                  Col("trunc %", "pct")], rows, notes)


def _step_range(steps: list[int], r: tuple[int, int]) -> str:
    a, b = steps[r[0]], steps[r[1] - 1]
    return str(a) if a == b else f"{a}-{b}"


def _thin(rows: list[list[Any]]) -> list[list[Any]]:
    """First and last rows of a long table, evenly spaced ones between."""
    if len(rows) <= MAX_ROWS:
        return rows
    picks = sorted({round(i * (len(rows) - 1) / (MAX_ROWS - 1)) for i in range(MAX_ROWS)})
    return [rows[i] for i in picks]


def _id_list(ids: list[str], full: bool, limit: int = 10) -> str:
    shown = ids if full or len(ids) <= limit else ids[:limit]
    more = len(ids) - len(shown)
    return ", ".join(shown) + (f" and {more} more (--full lists all)" if more else "")


def comparison_tables(reports: list[dict[str, Any]], full: bool) -> list[Table]:
    """Eval runs side by side (differences against the first), then per-question gains and losses."""
    base = reports[0]
    others = reports[1:]
    values = [comparable_metrics(r) for r in reports]
    names: list[str] = []
    for v in values:
        names += [k for k in v if k not in names]
    cols = [Col("metric"), Col(base["label"], "f3")]
    for r in others:
        cols += [Col(r["label"], "f3"), Col(f"{r['label']}-{base['label']}", "f3", signed=True)]
    rows, kinds = [], []
    for name in names:
        row: list[Any] = [name, values[0].get(name)]
        for v in values[1:]:
            a, b = values[0].get(name), v.get(name)
            row += [b, None if a is None or b is None else b - a]
        rows.append(row)
        kinds.append("f1" if name.startswith("len ") else "f3")  # lengths in tokens, the rest rates
    legend = ["rates as fractions; acc/len: accuracy and mean length of a token; disagree/similar: the diversity "
              "table's numbers; NMI strategy: NMI(token; strategy)"] + [f"{r['label']} = {r['run']}" for r in reports]
    tables = [Table("comparison", "comparison with " + base["label"], cols, rows, legend, row_kinds=kinds)]
    for r in others:
        tables.append(gains_table(base, r, full))
    return tables


def gains_table(base: dict[str, Any], other: dict[str, Any], full: bool) -> Table:
    g = other["compare"]["questions"]
    limit = None if full else MAX_ROWS // 2
    rows = [["gain", x["question_id"], x["base"], x["other"], x["delta"]] for x in g["gains"][:limit]]
    rows += [["loss", x["question_id"], x["base"], x["other"], x["delta"]] for x in g["losses"][:limit]]
    a, b = base["label"], other["label"]
    notes = [f"of {g['common']} questions in both: {len(g['gains'])} gained, {len(g['losses'])} lost, "
             f"{g['unchanged']} unchanged; the majority vote turned right on {g['vote_gained']}, wrong on "
             f"{g['vote_lost']}"]
    if not full and (len(g["gains"]) > limit or len(g["losses"]) > limit):
        notes.append(f"largest {limit} of each shown (--full lists all)")
    if g["only_base"] or g["only_other"]:
        notes.append(f"questions only in {a}: {g['only_base']}, only in {b}: {g['only_other']}")
    return Table("gains", f"per question: {b} vs {a} (accuracy %)",
                 [Col("change"), Col("question"), Col(f"{a} %", "pct"), Col(f"{b} %", "pct"), Col("Δ %", "pct")],
                 rows, notes)


def tables_for(reports: list[dict[str, Any]], full: bool) -> list[Table]:
    several = len(reports) > 1
    tables: list[Table] = []
    for r in reports:
        if "per_fork" in r:
            tables.append(per_fork_table(r, several))
            tables.append(passk_table(r, several))
            tables += coverage_tables(r, several, full)
            tables += diversity_tables(r, several)
            if "question" in r:
                tables.append(question_table(r, several, full))
        if "ssft" in r:
            tables += ssft_tables(r, several, full)
        if "gfpo" in r:
            tables.append(gfpo_table(r, several, full))
    evals = [r for r in reports if "per_fork" in r]
    if len(evals) > 1:
        tables += comparison_tables(evals, full)
    return tables


# --------------------------------------------------------------------------------------------------
# Rendering


def render_rich(tables: list[Table], console: Any) -> None:
    from forkctl.console import compact_table

    for t in tables:
        rt = compact_table(t.title, console.width)
        for c in t.columns:
            # fold, never ellipsis: a cut-off number or id would mislead
            rt.add_column(c.name, justify="left" if c.kind == "text" else "right", overflow="fold")
        for i in range(len(t.rows)):
            rt.add_row(*t.cells(i))
        console.print(rt)
        for note in t.notes:
            console.print(note, markup=False, highlight=False)
        for heading, text in t.blocks:
            console.rule(heading, style="dim", align="left")
            console.print(text, markup=False, highlight=False)
        console.print()


def render_markdown(tables: list[Table]) -> str:
    out = []
    for t in tables:
        out.append(f"### {_md(t.title)}\n")
        out.append("| " + " | ".join(_md(c.name) for c in t.columns) + " |")
        out.append("|" + "|".join(" --- " if c.kind == "text" else " ---: " for c in t.columns) + "|")
        for i in range(len(t.rows)):
            out.append("| " + " | ".join(_md(cell) for cell in t.cells(i)) + " |")
        out.append("")
        out += [f"{_md(note)}  " for note in t.notes]
        for heading, text in t.blocks:
            out += [f"\n**{_md(heading)}**\n", "```", text, "```"]
        out.append("")
    return "\n".join(out)


def _md(text: str) -> str:
    # "<think1>" would render as an (invisible) HTML tag; "|" would end the cell
    return text.replace("<", "\\<").replace("|", "\\|").replace("\n", " ")


def render_csv(tables: list[Table]) -> str:
    """One tidy CSV for all tables: ``table,title,row,column,value`` with raw values (rates as fractions), keyed by
    each row's first cell."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "title", "row", "column", "value"])
    for t in tables:
        for row in t.rows:
            for c, v in zip(t.columns[1:], row[1:]):
                w.writerow([t.name, t.title, row[0], c.name, "" if v is None else v])
        for heading, text in t.blocks:
            w.writerow([t.name, t.title, heading, "text", text])
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------
# Plots


def write_plots(runs: list[Run], reports: list[dict[str, Any]], plot_dir: str | Path) -> list[Path]:
    """PNGs: per eval run its token length distributions and per-token accuracy; pass@k/cons@k curves of all eval
    runs in one figure; per GFPO run its curves; per bipartite SSFT run its matched cost."""
    try:
        import matplotlib
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install 'forkctl[plots]'") from None
    matplotlib.use("Agg")  # files only: never a window, works without a display
    import matplotlib.pyplot as plt

    out = Path(plot_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = _file_names(runs)
    written: list[Path] = []
    for run, report, name in zip(runs, reports, names):
        if "eval" in run.kinds:
            written.append(_plot_lengths(plt, run, report, out / f"{name}-lengths.png"))
            written.append(_plot_accuracy(plt, report, out / f"{name}-accuracy.png"))
        if "gfpo" in run.kinds and report["gfpo"]["steps"]:
            written.append(_plot_gfpo(plt, report, out / f"{name}-gfpo.png"))
        if "ssft" in run.kinds and report["ssft"]["cost_by_step"]:
            written.append(_plot_cost(plt, report, out / f"{name}-matched-cost.png"))
    evals = [(r, n) for r, n in zip(reports, names) if "per_fork" in r]
    if evals:
        written.append(_plot_passk(plt, evals, out / "passk.png"))
    return written


def _file_names(runs: list[Run]) -> list[str]:
    """A file-name stem per run: its folder name, prefixed by its label when several runs are plotted."""
    stems = [re.sub(r"[^\w.-]+", "_", r.path.resolve().name) or "run" for r in runs]
    return stems if len(runs) == 1 else [f"{r.label}-{s}" for r, s in zip(runs, stems)]


def _save(plt: Any, fig: Any, path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    for ax in fig.axes:
        if ax.get_xlabel().startswith(("k ", "step")):  # k and steps are counts: no 1.5 ticks
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_lengths(plt: Any, run: Run, report: dict[str, Any], path: Path) -> Path:
    groups: dict[str, list[int]] = {}
    for s in run.samples:
        groups.setdefault(A.fork_key(s.fork), []).append(s.num_tokens)
    keys = A.sorted_keys(groups)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(keys) + 2), 4))
    ax.boxplot([groups[k] for k in keys], showmeans=True)
    ax.set_xticks(range(1, len(keys) + 1), [token_label(k) for k in keys])
    ax.set_xlabel("forking token")
    ax.set_ylabel("reasoning length (generated tokens)")
    ax.set_title(f"{report['label']}: length per token ({run.path.name})")
    return _save(plt, fig, path)


def _plot_accuracy(plt: Any, report: dict[str, Any], path: Path) -> Path:
    keys = list(report["per_fork"])
    acc = [100 * report["per_fork"][k]["accuracy"] for k in keys]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(keys) + 2), 4))
    bars = ax.bar([token_label(k) for k in keys], acc, color="tab:blue")
    ax.bar_label(bars, fmt="%.1f")
    ax.set_ylim(0, 105)
    ax.set_xlabel("forking token")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{report['label']}: accuracy per token ({Path(report['run']).name})")
    return _save(plt, fig, path)


def _plot_passk(plt: Any, evals: list[tuple[dict[str, Any], str]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (r, name) in enumerate(evals):
        ks = [p["k"] for p in r["pass_curve"]]
        color = f"C{i}"
        ax.plot(ks, [100 * p["pass"] for p in r["pass_curve"]], "-o", color=color, label=f"{name} pass@k")
        ax.plot(ks, [100 * p["cons"] for p in r["pass_curve"]], "--s", color=color, label=f"{name} cons@k")
    ax.set_xlabel("k (samples per question)")
    ax.set_ylabel("% of questions")
    ax.set_title("pass@k and cons@k")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def _plot_gfpo(plt: Any, report: dict[str, Any], path: Path) -> Path:
    s = report["gfpo"]["series"]
    steps = s["step"]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6), sharex=True)
    axes[0, 0].plot(steps, s["reward_mean"])
    axes[0, 0].set_title("mean reward")
    axes[0, 0].set_ylabel("reward")
    for i in range(report["gfpo"]["num_forks"]):
        axes[0, 1].plot(steps, [p[i] if i < len(p) else None for p in s["pi_mean"]], label=f"<think{i + 1}>")
    axes[0, 1].set_title("mean π per token")
    axes[0, 1].set_ylabel("π(token | question)")
    axes[0, 1].legend(fontsize="small")
    axes[1, 0].plot(steps, s["pi_entropy"], label="mean H(π)")
    axes[1, 0].plot(steps, s["pi_mean_entropy"], "--", label="H(mean π)")
    axes[1, 0].set_title("entropy of π")
    axes[1, 0].set_ylabel("nats")
    axes[1, 0].legend(fontsize="small")
    axes[1, 1].plot(steps, [100 * v if v is not None else None for v in s["zero_variance_frac"]])
    axes[1, 1].set_title("questions with zero reward variance")
    axes[1, 1].set_ylabel("%")
    for ax in axes[1]:
        ax.set_xlabel("step")
    fig.suptitle(f"{report['label']}: GFPO ({Path(report['run']).name})")
    return _save(plt, fig, path)


def _plot_cost(plt: Any, report: dict[str, Any], path: Path) -> Path:
    c = report["ssft"]["cost_by_step"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([x["step"] for x in c], [x["cost"] for x in c])
    ax.set_xlabel("step")
    ax.set_ylabel("mean matched cost (NLL per token)")
    ax.set_title(f"{report['label']}: SSFT matched cost ({Path(report['run']).name})")
    return _save(plt, fig, path)


# --------------------------------------------------------------------------------------------------
# Entry point


def run_inspect(runs: list[str], fmt: str = "table", plot_dir: str | None = None, question: str | None = None,
                full: bool = False, console: Any = None) -> dict[str, Any] | list[dict[str, Any]]:
    """Inspect RUN directories; print in ``fmt``; return the report (a list of them for several runs)."""
    if not runs:
        raise UserError("give at least one RUN directory (an eval, SSFT or GFPO output)")
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    loaded = [load_run(arg, _label(i)) for i, arg in enumerate(runs)]
    _check_question(loaded, question)
    reports = [build_report(run, question) for run in loaded]
    evals = [(run, rep) for run, rep in zip(loaded, reports) if "eval" in run.kinds]
    for run, rep in evals[1:]:
        rep["compare"] = compare_report(evals[0][0], evals[0][1], run, rep)
    if console is None:
        from rich.console import Console

        console = Console()
    result: dict[str, Any] | list[dict[str, Any]] = reports[0] if len(reports) == 1 else reports
    if fmt == "json":
        console.out(json.dumps(result, indent=2, ensure_ascii=False), highlight=False)
    else:
        tables = tables_for(reports, full)
        if fmt == "table":
            render_rich(tables, console)
        else:
            console.out(render_markdown(tables) if fmt == "markdown" else render_csv(tables), highlight=False)
    if plot_dir is not None:
        write_plots(loaded, reports, plot_dir)
    return result


def _label(i: int) -> str:
    return chr(ord("A") + i) if i < 26 else f"R{i + 1}"


def _check_question(runs: list[Run], question: str | None) -> None:
    if question is None:
        return
    evals = [r for r in runs if "eval" in r.kinds]
    if not evals:
        raise UserError("--question needs an eval run (a directory with samples.jsonl)")
    if not any(question == s.question_id for r in evals for s in r.samples):
        raise UserError(f"question {question!r} is in no given eval run")

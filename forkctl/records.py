"""Records that flow between stages, and their JSONL I/O.

Every stage reads and writes one JSON object per line. Reading validates each line and fails with
``file:line: field 'x': problem``; writing appends each line with a single ``write``, so a killed run can
leave at most its last line torn, and :func:`repair_tail` (which every resume calls first) drops it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from forkctl.errors import UserError


class RecordError(UserError):
    """A record that does not match its schema; the message names file, line and field."""

    def __init__(self, where: str, field_name: str | None, problem: str) -> None:
        self.where, self.field_name, self.problem = where, field_name, problem
        prefix = f"{where}: field '{field_name}': " if field_name else f"{where}: "
        super().__init__(prefix + problem)


# --------------------------------------------------------------------------------------------------
# Schema checking: each record lists (name, accepted types, required). Types are JSON types.

_JSON_TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "list",
                    dict: "object", type(None): "null"}


def _check_type(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False  # JSON true is not a number here
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


R = TypeVar("R", bound="Record")


@dataclass
class Record:
    """Base class: a dataclass with a schema, built from / turned into one JSON object."""

    SCHEMA: ClassVar[tuple[tuple[str, tuple[type, ...], bool], ...]] = ()

    @classmethod
    def from_dict(cls: type[R], data: Any, where: str = "<record>") -> R:
        if not isinstance(data, dict):
            raise RecordError(where, None, f"expected a JSON object, got {type(data).__name__}")
        for name, types, required in cls.SCHEMA:
            if name not in data:
                if required:
                    raise RecordError(where, name, "missing")
                continue
            if not _check_type(data[name], types):
                expected = " or ".join(_JSON_TYPE_NAMES.get(t, t.__name__) for t in types)
                got = _JSON_TYPE_NAMES.get(type(data[name]), type(data[name]).__name__)
                raise RecordError(where, name, f"expected {expected}, got {got}")
        return cls._build(data, where)

    @classmethod
    def _build(cls: type[R], data: dict[str, Any], where: str) -> R:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "extra" in known:
            kwargs["extra"] = {k: v for k, v in data.items() if k not in known}
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra", None) or {}
        return {**data, **extra}


@dataclass
class Question(Record):
    """A benchmark or training question. Code questions carry tests; math ones an answer."""

    SCHEMA = (("id", (str, int), True), ("problem", (str,), True), ("answer", (str, int, float, type(None)), False),
              ("starter_code", (str, type(None)), False), ("testtype", (str, type(None)), False),
              ("fn_name", (str, type(None)), False), ("tests", (list, type(None)), False))

    id: str
    problem: str
    answer: str | None = None
    starter_code: str | None = None
    testtype: str | None = None
    fn_name: str | None = None
    tests: list[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _build(cls, data: dict[str, Any], where: str) -> Question:
        q = super()._build(data, where)
        q.id = str(q.id)
        if q.answer is not None:
            q.answer = str(q.answer)
        if not q.problem.strip():
            raise RecordError(where, "problem", "empty")
        return q


@dataclass
class Trace(Record):
    """One reasoning trace: the assistant text that follows the forking token."""

    SCHEMA = (("teacher", (str,), True), ("text", (str,), True))

    teacher: str
    text: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TraceSet(Record):
    """What ``ssft`` trains on: one question with its distinct correct traces."""

    SCHEMA = (("id", (str, int), True), ("problem", (str,), True), ("answer", (str, int, float, type(None)), False),
              ("traces", (list,), True))

    id: str
    problem: str
    answer: str | None
    traces: list[Trace]
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _build(cls, data: dict[str, Any], where: str) -> TraceSet:
        traces = [Trace.from_dict(t, f"{where}: traces[{i}]") for i, t in enumerate(data["traces"])]
        for i, t in enumerate(traces):
            if not t.text.strip():
                raise RecordError(f"{where}: traces[{i}]", "text", "empty trace")
        extra = {k: v for k, v in data.items() if k not in {"id", "problem", "answer", "traces"}}
        answer = None if data.get("answer") is None else str(data["answer"])
        return cls(id=str(data["id"]), problem=data["problem"], answer=answer, traces=traces, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "problem": self.problem, "answer": self.answer,
                "traces": [t.to_dict() for t in self.traces], **self.extra}


def _check_sample_key(record: Any, where: str) -> None:
    """(question_id, sample) keys a generated record: ids as text, sample indices from 0."""
    record.question_id = str(record.question_id)
    if record.sample < 0:
        raise RecordError(where, "sample", "must be >= 0")


@dataclass
class Sample(Record):
    """One generated response to a question, scored. ``fork`` is the forking token's index 1..N or None."""

    SCHEMA = (("question_id", (str, int), True), ("sample", (int,), True), ("fork", (int, type(None)), True),
              ("text", (str,), True), ("answer", (str, type(None)), False), ("correct", (bool, type(None)), False),
              ("num_tokens", (int,), False), ("finish_reason", (str, type(None)), False))

    question_id: str
    sample: int
    fork: int | None
    text: str
    answer: str | None = None
    correct: bool | None = None
    num_tokens: int = 0
    finish_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _build(cls, data: dict[str, Any], where: str) -> Sample:
        s = super()._build(data, where)
        _check_sample_key(s, where)
        if s.fork is not None and s.fork < 1:
            raise RecordError(where, "fork", "must be >= 1 (forking tokens are numbered from 1) or null")
        return s

    @property
    def key(self) -> tuple[str, int]:
        return (self.question_id, self.sample)


# --------------------------------------------------------------------------------------------------
# JSONL I/O


def iter_json_lines(path: str | Path) -> Iterator[tuple[str, Any]]:
    """Yield (``file:line`` location, parsed object) for each non-blank line."""
    path = Path(path)
    if not path.exists():
        raise RecordError(str(path), None, "file not found")
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordError(where, None, f"invalid JSON ({exc.msg} at column {exc.colno})") from None


def read_json_lines(path: str | Path) -> list[Any]:
    """Every object of a JSONL file, unvalidated (logs, configs)."""
    return [obj for _, obj in iter_json_lines(path)]


def keep_lines(path: str | Path, keep: Callable[[Any], bool]) -> None:
    """Rewrite a JSONL file atomically with only the objects ``keep`` accepts (e.g. a log cut back to the
    checkpoint a run resumes from); a missing file is left alone."""
    if not Path(path).exists():
        return
    repair_tail(path)
    write_records(path, [obj for obj in read_json_lines(path) if keep(obj)])


def read_records(path: str | Path, cls: type[R]) -> list[R]:
    """Read and validate every line of a JSONL file (or the rows of a Parquet file) as ``cls``."""
    path = Path(path)
    if path.suffix == ".parquet":
        return [cls.from_dict(row, f"{path}:row {i + 1}") for i, row in enumerate(_read_parquet(path))]
    return [cls.from_dict(obj, where) for where, obj in iter_json_lines(path)]


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def repair_tail(path: str | Path) -> int:
    """Drop an incomplete last line (one without a newline) left by a crash; return bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return 0
        # Walk back to the previous newline.
        pos = size - 1
        chunk = 4096
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            data = fh.read(pos - start)
            idx = data.rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            pos = start
        else:
            keep = 0
        fh.truncate(keep)
        return size - keep


class JsonlAppender:
    """Append records to a JSONL file, one ``os.write`` per line (O_APPEND), flushed to the OS at once.

    Lines never interleave and every line before the last is whole. Only the last can be torn: Linux lets
    a SIGKILL cut a regular-file write short between pages. Opening an appender (as every resume does)
    first drops such a tail with :func:`repair_tail`. ``fsync=True`` also survives a machine crash.
    """

    def __init__(self, path: str | Path, fsync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._fsync = fsync

    def write(self, record: Record | dict[str, Any]) -> None:
        data = record.to_dict() if isinstance(record, Record) else record
        line = (json.dumps(data, ensure_ascii=False) + "\n").encode("utf-8")
        written = os.write(self._fd, line)
        while written < len(line):  # a short write without a signal (e.g. a full pipe): finish the line
            written += os.write(self._fd, line[written:])
        if self._fsync:
            os.fsync(self._fd)

    def write_many(self, records: Iterable[Record | dict[str, Any]]) -> None:
        for r in records:
            self.write(r)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_records(path: str | Path, records: Iterable[Record | dict[str, Any]]) -> None:
    """Write a whole file atomically: to a temporary sibling, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for r in records:
            data = r.to_dict() if isinstance(r, Record) else r
            fh.write(json.dumps(data, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def write_json(path: str | Path, data: Any) -> None:
    """Write a JSON document atomically (temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class TeacherResponse(Record):
    """One response of a teacher to a question, as ``collect`` writes it (one per (question, teacher, sample)).

    ``text`` is the message content, ``reasoning`` the separate reasoning field some servers return
    (``reasoning_content``/``reasoning``) or None, ``answer`` the final answer extracted from them or None.
    ``error`` is None on success; a request that failed after all its retries is recorded with its error (and
    ``text`` None) so a run always finishes. ``usage`` is this sample's share when one request returned several.
    """

    SCHEMA = (("question_id", (str, int), True), ("teacher", (str,), True), ("sample", (int,), True),
              ("text", (str, type(None)), True), ("reasoning", (str, type(None)), False),
              ("answer", (str, type(None)), False), ("finish_reason", (str, type(None)), False),
              ("usage", (dict, type(None)), False), ("latency_s", (float, type(None)), False),
              ("error", (str, type(None)), False))

    question_id: str
    teacher: str
    sample: int
    text: str | None
    reasoning: str | None = None
    answer: str | None = None
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    latency_s: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _build(cls, data: dict[str, Any], where: str) -> TeacherResponse:
        r = super()._build(data, where)
        _check_sample_key(r, where)
        if r.usage is not None:
            for name in ("prompt_tokens", "completion_tokens"):
                if not _check_type(r.usage.get(name, 0), (int,)):
                    raise RecordError(where, f"usage.{name}", "expected integer")
        if r.error is None and r.text is None:
            raise RecordError(where, "text", "null without an error")
        return r

    def to_dict(self) -> dict[str, Any]:
        # Written once per response by collect: a flat dict, cheaper than dataclasses.asdict's deep copy.
        return {"question_id": self.question_id, "teacher": self.teacher, "sample": self.sample, "text": self.text,
                "reasoning": self.reasoning, "answer": self.answer, "finish_reason": self.finish_reason,
                "usage": self.usage, "latency_s": self.latency_s, "error": self.error, **self.extra}

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.question_id, self.teacher, self.sample)

    @property
    def ok(self) -> bool:
        return self.error is None

"""``forkctl collect``: ask several teachers (OpenAI-compatible chat APIs) for reasoning traces, never losing work.

Every (question, teacher, sample) becomes one :class:`~forkctl.records.TeacherResponse` line in ``--out``, appended
by a single ``write`` as soon as its response arrives, so a run killed at any instant (SIGKILL included) keeps
every finished line whole and a rerun requests only what is missing. Requests go through ``openai.AsyncOpenAI``
with its own retries off (``max_retries=0``): this module retries 429/5xx/timeouts/connection errors/malformed or
empty responses itself, with exponential backoff, jitter and ``Retry-After``, so retries are counted and a
teacher's rate limit slows only that teacher. A request that still fails is recorded with its ``error`` so the
run finishes; ``--retry-failed`` asks for those again on a later run.

Beside ``--out``, ``<name>.config.json`` holds the run config with its fingerprint: the task, the (resolved)
prompt template, the system prompt and every teacher's model and params. A rerun under another fingerprint is
refused (``--overwrite`` deletes the records and starts again); a new teacher, more questions or more samples
only add records. A run that recorded only failures raises :class:`NothingCollected` (exit 2 in the CLI).

API keys are read from the environment variable a teacher *names*; the value is only ever handed to the client
and scrubbed from error messages, never written to records, the saved config or the console.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import logging
import random
import re
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from forkctl import console
from forkctl.config import CollectConfig, ConfigError, fingerprint_changes, read_run_config, write_run_config
from forkctl.errors import UserError
from forkctl.records import JsonlAppender, Question, TeacherResponse, read_records, repair_tail, write_records
from forkctl.teachers import Teacher, load_teachers, traces_config_path

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 600.0  # a server asking for more than this is treated as asking for this


# --------------------------------------------------------------------------------------------------
# Configuration and results


@dataclass
class TeacherStats:
    """What one teacher did in this run."""

    ok: int = 0
    failed: int = 0
    retried: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latencies: list[float] = field(default_factory=list)
    skipped: int = 0  # already recorded before this run
    aborted: str | None = None  # why the teacher was stopped (bad key, unknown model): its rest was not sent
    unsent: int = 0
    first_error: str | None = None  # of the failures recorded in this run, for the summary line

    def percentile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


@dataclass
class CollectResult:
    out_path: Path
    config_path: Path
    teachers: list[Teacher]
    stats: dict[str, TeacherStats]
    elapsed_s: float
    warnings: list[str] = field(default_factory=list)  # already shown with console.warn

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.stats.values())

    @property
    def ok(self) -> int:
        return sum(s.ok for s in self.stats.values())


class NothingCollected(UserError):
    """Every request of the run failed (or its teachers were stopped): exit non-zero, the result attached."""

    def __init__(self, message: str, result: CollectResult) -> None:
        super().__init__(message)
        self.result = result


# --------------------------------------------------------------------------------------------------
# The stage


def run_collect(cfg: CollectConfig) -> CollectResult:
    """Request every missing (question, teacher, sample), appending each response to ``cfg.out`` as it arrives.

    Raises :class:`NothingCollected` (after showing the summary table) when this run recorded only failures;
    a run where some requests succeeded returns normally (the CLI warns about the failures)."""
    cfg.validate()
    teachers = load_teachers(cfg.teachers)  # type: ignore[arg-type]
    keys = _api_keys(teachers)
    given_template = cfg.prompt_template
    task, questions = _load_questions(cfg)
    users = {q.id: task.user_message(q, given_template) for q in questions}  # the task words it (LCB: starter code)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        config_path = traces_config_path(out)
        _check_and_save_config(config_path, cfg, _task_id(cfg.task), teachers, len(questions))  # type: ignore[arg-type]
        done = _recorded_keys(out, cfg.retry_failed)
        jobs = {t.name: _jobs_for(t, questions, cfg.samples, done) for t in teachers}
        stats = {t.name: TeacherStats() for t in teachers}
        for t in teachers:
            total = len(questions) * (t.samples or cfg.samples)
            stats[t.name].skipped = total - sum(len(s) for _, s in jobs[t.name])
        start = time.monotonic()
        echoes = _Echoes()
        todo = sum(len(s) for js in jobs.values() for _, s in js)
        with JsonlAppender(out) as appender, console.progress("collect", todo, not cfg.quiet and todo > 0) as bar:

            def write(record: TeacherResponse) -> None:
                appender.write(record)  # one os.write per line: a kill never tears it
                echoes.add(record)
                bar.advance(1, _status(stats))

            asyncio.run(_collect_all(cfg, teachers, keys, jobs, stats, write, task.extract_answer, users))
            bar.advance(0, _status(stats))  # the closing line states the true counts, unsent ones included
    result = CollectResult(out, config_path, teachers, stats, time.monotonic() - start, echoes.warnings(teachers))
    for message in result.warnings:
        console.warn(message)
    _fail_if_nothing_collected(result)
    return result


def _status(stats: dict[str, TeacherStats]) -> str:
    failed = sum(s.failed for s in stats.values())
    retried = sum(s.retried for s in stats.values())
    unsent = sum(s.unsent for s in stats.values())
    return f"failed {failed} · retried {retried}" + (f" · unsent {unsent}" if unsent else "")


def _fail_if_nothing_collected(result: CollectResult) -> None:
    """A run that asked for something and recorded no response at all is a failure, said in one line."""
    aborted = {name: s for name, s in result.stats.items() if s.aborted}
    if result.ok or not (result.failed or aborted):
        return
    console.show(summary_table(result))
    parts = []
    if result.failed:
        first = next(s.first_error for s in result.stats.values() if s.first_error)
        parts.append(f"all {result.failed} requests failed (first error: {first}); they are recorded with their "
                     f"error: fix the cause and rerun with --retry-failed")
    parts += [f"teacher {name} stopped ({s.aborted}); its {s.unsent} remaining requests were not sent"
              for name, s in aborted.items()]
    raise NothingCollected("collect got no response: " + "; ".join(parts), result)


def _api_keys(teachers: list[Teacher]) -> dict[str, str]:
    """Each teacher's key from the variable it names; local servers without a key get a placeholder."""
    import os

    keys = {}
    for t in teachers:
        if t.api_key_env is None:
            keys[t.name] = "EMPTY"
        elif not os.environ.get(t.api_key_env):
            raise UserError(f"teacher {t.name}: environment variable {t.api_key_env} is not set (it should hold "
                            f"the API key)")
        else:
            keys[t.name] = os.environ[t.api_key_env]
    return keys


def _load_questions(cfg: CollectConfig) -> tuple[Any, list[Question]]:
    from forkctl.tasks import get_task

    task = get_task(cfg.task, **cfg.task_options())  # type: ignore[arg-type]
    cfg.prompt_template = cfg.prompt_template or task.prompt_template  # resolved: the fingerprint holds the text
    questions = task.load()
    if cfg.limit is not None:
        questions = questions[: cfg.limit]
    if not questions:
        raise UserError(f"{cfg.task}: no questions")
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise UserError(f"{cfg.task}: question id {dup!r} appears more than once (ids key the records)")
    return task, questions


def _task_id(spec: str) -> str:
    """The task as the fingerprint knows it: a registered name, or a questions file's absolute path (so the same
    file named from another folder is the same task, and another file with the same ids is not)."""
    from forkctl.tasks import REGISTRY

    return spec if spec in REGISTRY else str(Path(spec).resolve())


class _exclusive:
    """An exclusive lock beside ``out`` so two collectors never append to one file (the OS drops it on kill)."""

    def __init__(self, out: Path) -> None:
        self.path = out.with_name(out.name + ".lock")
        self._fh: Any = None

    def __enter__(self) -> _exclusive:
        try:
            import fcntl
        except ImportError:  # not on Windows: no lock
            return self
        self._fh = self.path.open("w")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.close()
            raise UserError(f"another forkctl collect is writing {self.path.with_suffix('')}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()


def _recorded_keys(out: Path, retry_failed: bool) -> set[tuple[str, str, int]]:
    """Keys already in ``out`` (after dropping a torn last line). With ``retry_failed``, failed records are
    removed first (atomic rewrite) so they are requested again and every key stays recorded once."""
    if not out.exists():
        return set()
    repair_tail(out)
    records = read_records(out, TeacherResponse)
    if retry_failed and any(not r.ok for r in records):
        records = [r for r in records if r.ok]
        write_records(out, records)
    return {r.key for r in records}


# --------------------------------------------------------------------------------------------------
# Fingerprint: what decides the responses, so a rerun never mixes two settings in one file


def _fingerprint(task_id: str, cfg: CollectConfig, teachers: list[Teacher]) -> dict[str, Any]:
    """Flat, so a refusal names the one thing that changed ('teacher r model 'a' -> 'b'')."""
    fp: dict[str, Any] = {"task": task_id, "prompt_template": cfg.prompt_template,
                          "system_prompt": cfg.system_prompt}
    for t in teachers:
        fp[f"teacher {t.name} model"] = t.model
        fp[f"teacher {t.name} params"] = t.params
    return fp


def _legacy_fingerprint(stored: dict[str, Any], task_id: str) -> dict[str, Any]:
    """The fingerprint of a config written before fingerprints existed (its task was not resolved: assume it)."""
    config = stored.get("config") or {}
    fp: dict[str, Any] = {"task": task_id, "prompt_template": config.get("prompt_template"),
                          "system_prompt": config.get("system_prompt")}
    for name, t in (stored.get("teachers") or {}).items():
        fp[f"teacher {name} model"] = t.get("model")
        fp[f"teacher {name} params"] = t.get("params", {})
    return fp


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Differences that would mix settings. A teacher present in only one of the two runs is none: adding a
    teacher (or leaving one out) just adds (or keeps) its own records."""
    def shared(key: str) -> bool:
        return not key.startswith("teacher ") or (key in old and key in new)

    keys = [k for k in {**old, **new} if shared(k)]
    return fingerprint_changes({k: old.get(k) for k in keys}, {k: new.get(k) for k in keys})


def _check_and_save_config(path: Path, cfg: CollectConfig, task_id: str, teachers: list[Teacher],
                           num_questions: int) -> None:
    """Refuse to add to records made under another fingerprint (or, with ``--overwrite``, delete them and start
    again); then save the run config (teachers by env-var name only) with the fingerprint of every teacher the
    records hold."""
    fp = _fingerprint(task_id, cfg, teachers)
    stored = read_run_config(path) or {}
    old = (stored.get("fingerprint") or _legacy_fingerprint(stored, task_id)) if stored else {}
    changes = _changes(old, fp) if stored else []  # no run config: a fresh run (or records from elsewhere)
    if changes and cfg.overwrite:
        Path(cfg.out).unlink(missing_ok=True)  # type: ignore[arg-type]
        stored, old = {}, {}
    elif changes:
        raise ConfigError(f"{cfg.out} was collected with other settings ({'; '.join(changes)}; see {path}): "
                          f"refusing to mix them; use a new --out, --overwrite to delete it and start again, or "
                          f"a new teacher name for a changed teacher")
    previous_teachers = stored.get("teachers") or {}
    teachers_seen = {**previous_teachers, **{t.name: asdict(t) for t in teachers}}  # file order, then new ones
    write_run_config(path, "collect", cfg, {**old, **fp},
                     extra={"teachers": teachers_seen, "num_questions": num_questions})


def _jobs_for(t: Teacher, questions: list[Question], default_samples: int,
              done: set[tuple[str, str, int]]) -> list[tuple[Question, list[int]]]:
    """(question, sample indices still missing) for one teacher, in question order."""
    n = t.samples or default_samples
    jobs = []
    for q in questions:
        missing = [s for s in range(n) if (q.id, t.name, s) not in done]
        if missing:
            jobs.append((q, missing))
    return jobs


# --------------------------------------------------------------------------------------------------
# Requests


class RateLimiter:
    """Requests-per-minute as evenly spaced start times; ``pause`` pushes every later start back (Retry-After).

    The promise, and what the tests check: the k-th start is never before the first slot plus k intervals. Later
    is always possible (a busy machine wakes sleepers late), and a server may then see two requests close together
    (the first request of a client also pays its connection set-up); the schedule itself never bunches."""

    def __init__(self, rpm: float | None) -> None:
        self.interval = 60.0 / rpm if rpm else 0.0
        self._next = 0.0

    def reserve(self) -> float:
        """The next start time (``time.monotonic``), taken now so concurrent callers get successive slots."""
        slot = max(time.monotonic(), self._next)
        self._next = slot + self.interval
        return slot

    async def wait(self) -> None:
        delay = self.reserve() - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def pause(self, seconds: float) -> None:
        self._next = max(self._next, time.monotonic() + seconds)


class _Retryable(Exception):
    """A failure worth retrying; ``retry_after`` is what the server asked for (seconds) if it did."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Failed(Exception):
    """A request that will not succeed (retries exhausted, or a 4xx about the request itself)."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class _Fatal(Exception):
    """A failure of the teacher itself (bad key, unknown model): stop sending it requests."""


@dataclass
class _Reply:
    choices: list[Any]
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    attempts: int


class _TeacherRunner:
    """Sends one teacher's requests with its own concurrency, rate limit and retries, writing each record."""

    def __init__(self, t: Teacher, api_key: str, cfg: CollectConfig, global_sem: asyncio.Semaphore,
                 stats: TeacherStats, write: Callable[[TeacherResponse], None],
                 extract: Callable[[str], str | None], users: dict[str, str]) -> None:
        from openai import AsyncOpenAI

        self.t, self.cfg, self.global_sem, self.stats, self.write = t, cfg, global_sem, stats, write
        self.extract = extract
        self._secret = api_key if api_key != "EMPTY" else None
        # max_retries=0: this class retries, so it can count retries and honour Retry-After per teacher.
        self.client = AsyncOpenAI(base_url=t.base_url, api_key=api_key, timeout=t.timeout or cfg.timeout,
                                  max_retries=0)
        self.limiter = RateLimiter(t.rpm)
        self.users = users  # question id -> the user message
        self.messages_prefix = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []

    async def run(self, jobs: list[tuple[Question, list[int]]]) -> None:
        queue = deque(jobs)
        workers = min(self.t.concurrency or self.cfg.concurrency, len(queue))
        try:
            await asyncio.gather(*(self._worker(queue) for _ in range(workers)))
        finally:
            await self.client.close()
        if self.stats.aborted:
            self.stats.unsent = sum(len(s) for _, s in queue)

    async def _worker(self, queue: deque[tuple[Question, list[int]]]) -> None:
        while queue and not self.stats.aborted:
            question, missing = queue.popleft()
            remaining = await self._collect_question(question, missing)
            if remaining:  # aborted mid-question: count what was not sent
                queue.appendleft((question, remaining))

    async def _collect_question(self, q: Question, missing: list[int]) -> list[int]:
        """Request until every missing sample is recorded (servers may ignore ``n``); return what is left
        unsent only if the teacher was aborted."""
        remaining = list(missing)
        messages = [*self.messages_prefix,
                    {"role": "user", "content": self.users[q.id]}]
        while remaining and not self.stats.aborted:
            try:
                reply = await self._request(messages, len(remaining) if self.t.send_n else 1)
            except _Fatal as exc:
                if not self.stats.aborted:
                    self.stats.aborted = str(exc)
                return remaining
            except _Failed as exc:
                for s in remaining:
                    self._record_failure(q, s, str(exc), exc.attempts)
                return []
            remaining = self._record_reply(q, remaining, reply)
        return remaining

    def _record_reply(self, q: Question, remaining: list[int], reply: _Reply) -> list[int]:
        used = reply.choices[: len(remaining)]
        # Usage covers the whole request: the prompt is billed once, completion tokens are split evenly.
        share, extra_tokens = divmod(reply.completion_tokens, len(used))
        for i, (choice, sample) in enumerate(zip(used, remaining)):
            msg = choice.message
            text = msg.content or ""
            reasoning = _reasoning_of(msg)
            usage = {"prompt_tokens": reply.prompt_tokens if i == 0 else 0,
                     "completion_tokens": share + (extra_tokens if i == 0 else 0)}
            self.write(TeacherResponse(
                question_id=q.id, teacher=self.t.name, sample=sample, text=text, reasoning=reasoning,
                answer=self.extract(text) or (self.extract(reasoning) if reasoning else None),
                finish_reason=choice.finish_reason, usage=usage, latency_s=round(reply.latency_s, 4),
                error=None, extra={"attempts": reply.attempts}))
            self.stats.ok += 1
            self.stats.latencies.append(reply.latency_s)
        self.stats.prompt_tokens += reply.prompt_tokens
        self.stats.completion_tokens += reply.completion_tokens
        return remaining[len(used):]

    def _record_failure(self, q: Question, sample: int, error: str, attempts: int) -> None:
        self.write(TeacherResponse(question_id=q.id, teacher=self.t.name, sample=sample, text=None,
                                   error=error, extra={"attempts": attempts}))
        self.stats.failed += 1
        self.stats.first_error = self.stats.first_error or error

    async def _request(self, messages: list[dict[str, str]], n: int) -> _Reply:
        attempt = 0
        while True:
            await self.limiter.wait()
            async with self.global_sem:
                start = time.monotonic()
                try:
                    resp = await self.client.chat.completions.create(**self._kwargs(messages, n))
                    choices = _usable_choices(resp)
                    usage = resp.usage
                    return _Reply(choices, int(getattr(usage, "prompt_tokens", 0) or 0),
                                  int(getattr(usage, "completion_tokens", 0) or 0), time.monotonic() - start,
                                  attempt + 1)
                except Exception as exc:  # noqa: BLE001 - classified below; nothing may kill the run
                    error = _classify(exc)
            message = self._scrub(str(error))
            if isinstance(error, _Fatal):
                raise _Fatal(message)
            if not isinstance(error, _Retryable) or attempt >= self.cfg.max_retries:
                suffix = f" (after {attempt + 1} attempts)" if attempt else ""
                raise _Failed(message + suffix, attempt + 1)
            if error.retry_after is not None:
                delay = min(error.retry_after, MAX_RETRY_AFTER_S)
                self.limiter.pause(delay)  # the server is rate limiting this teacher: all its requests wait
            else:
                delay = self._backoff(attempt)
            self.stats.retried += 1
            log.debug("teacher %s: %s; retry %d in %.2fs", self.t.name, message, attempt + 1, delay)
            attempt += 1
            await asyncio.sleep(delay)

    def _kwargs(self, messages: list[dict[str, str]], n: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.t.model, "messages": messages, **self.t.params}
        if n > 1:
            kwargs["n"] = n
        return kwargs

    def _backoff(self, attempt: int) -> float:
        """Exponential with jitter (uniform over the upper half), so retries of many requests spread out."""
        ceiling = min(self.cfg.max_backoff, self.cfg.backoff * 2 ** attempt)
        return ceiling * random.uniform(0.5, 1.0)

    def _scrub(self, text: str) -> str:
        """An error message safe to record: never the key (some providers echo part of it back)."""
        if self._secret:
            text = text.replace(self._secret, "***")
        return re.sub(r"\b(sk-|key-)[A-Za-z0-9*_\-]{4,}", r"\1***", text)


def _reasoning_of(msg: Any) -> str | None:
    for name in ("reasoning_content", "reasoning"):
        value = getattr(msg, name, None)
        if value is None and getattr(msg, "model_extra", None):
            value = msg.model_extra.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _usable_choices(resp: Any) -> list[Any]:
    """The choices worth recording. Empty ones are a server fault worth retrying, except when the token budget
    ran out (``length``): a reasoning model that hides its reasoning can legitimately return nothing then."""
    choices = [c for c in (getattr(resp, "choices", None) or [])
               if getattr(c, "message", None) is not None
               and (c.message.content or _reasoning_of(c.message) or c.finish_reason == "length")]
    if not choices:
        raise _Retryable("empty response (no choices with content)")
    return choices


def _classify(exc: Exception) -> Exception:
    """Map a client exception to _Retryable, _Failed-worthy (plain Exception) or _Fatal."""
    import openai

    if isinstance(exc, _Retryable):
        return exc
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        text = f"HTTP {status}: {_short(_body_message(exc))}"
        if status in (408, 409, 429) or status >= 500:
            return _Retryable(text, _retry_after(exc.response.headers))
        if status in (401, 403, 404):
            return _Fatal(text)
        return Exception(text)
    if isinstance(exc, openai.APITimeoutError):
        return _Retryable("timeout")
    if isinstance(exc, openai.APIConnectionError):
        return _Retryable(f"connection error: {_short(str(exc))}")
    if isinstance(exc, (json.JSONDecodeError, openai.APIResponseValidationError)):
        return _Retryable(f"malformed response: {_short(str(exc))}")
    # Anything else (a proxy's odd reply, a pydantic error) is retried too, then recorded: never crash the run.
    return _Retryable(f"{type(exc).__name__}: {_short(str(exc))}")


def _body_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(body.get("message"), str):
            return body["message"]
    return str(getattr(exc, "message", "") or exc)


def _short(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:limit]


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), if present."""
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, AttributeError):
        return None


async def _collect_all(cfg: CollectConfig, teachers: list[Teacher], keys: dict[str, str],
                       jobs: dict[str, list[tuple[Question, list[int]]]], stats: dict[str, TeacherStats],
                       write: Callable[[TeacherResponse], None], extract: Callable[[str], str | None],
                       users: dict[str, str]) -> None:
    global_sem = asyncio.Semaphore(cfg.concurrency)
    runners = [_TeacherRunner(t, keys[t.name], cfg, global_sem, stats[t.name], write, extract, users) for t in teachers
               if jobs[t.name]]
    await asyncio.gather(*(r.run(jobs[r.t.name]) for r in runners))


# --------------------------------------------------------------------------------------------------
# Echoes and summary


class _Echoes:
    """Digests of this run's response texts, to notice a server that ignores sampling settings: a sampling
    teacher whose samples for a question are all identical, or two teachers answering with the same text."""

    def __init__(self) -> None:
        self.digests: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))

    def add(self, r: TeacherResponse) -> None:
        if r.ok:
            text = f"{r.reasoning or ''}\0{r.text or ''}"
            self.digests[r.question_id][r.teacher].append(hashlib.sha1(text.encode()).hexdigest())

    def warnings(self, teachers: list[Teacher]) -> list[str]:
        by_name = {t.name: t for t in teachers}
        asked: Counter[str] = Counter()
        repeated: Counter[str] = Counter()
        shared: Counter[tuple[str, str]] = Counter()
        for per_teacher in self.digests.values():
            for name, ds in per_teacher.items():
                if len(ds) >= 2 and by_name[name].samples_should_differ:
                    asked[name] += 1
                    repeated[name] += len(set(ds)) == 1
            names = sorted(per_teacher)
            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    shared[(a, b)] += bool(set(per_teacher[a]) & set(per_teacher[b]))
        out = [f"teacher {name}: its samples were identical for {n} of {asked[name]} questions although its "
               f"temperature is {by_name[name].params.get('temperature', 'unset (1.0)')}: the server may ignore "
               f"the sampling settings (e.g. a generation config with sampling off), or a fixed seed repeats them"
               for name, n in repeated.items() if n]
        out += [f"teachers {a} and {b} returned identical text for {n} questions: the server may ignore their "
                f"sampling settings (decoding greedily), or they are one model with the same settings"
                for (a, b), n in shared.items() if n]
        return out


def summary_table(result: CollectResult) -> Any:
    """Per teacher: ok / failed / retried / skipped, tokens in/out, cost, latency p50/p95 (this run)."""
    columns = ["teacher", "ok", "failed", "retried", "skipped", "tok in", "tok out", "cost $", "p50 s", "p95 s"]
    rows = []
    total_cost: float | None = None
    for t in result.teachers:
        s = result.stats[t.name]
        cost = t.cost(s.prompt_tokens, s.completion_tokens)
        if cost is not None:
            total_cost = (total_cost or 0.0) + cost
        p50, p95 = s.percentile(0.5), s.percentile(0.95)
        rows.append([t.name, s.ok, s.failed, s.retried, s.skipped, f"{s.prompt_tokens:,}", f"{s.completion_tokens:,}",
                     "-" if cost is None else f"{cost:.4f}", "-" if p50 is None else f"{p50:.2f}",
                     "-" if p95 is None else f"{p95:.2f}"])
    table = console.table(f"collect · {result.out_path} · {result.elapsed_s:.1f}s", columns, rows,
                          right=tuple(range(1, len(columns))))
    if total_cost is not None:
        table.caption = f"total cost ${total_cost:.4f} (teachers with a price)"
    return table

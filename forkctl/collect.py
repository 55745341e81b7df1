"""``forkctl collect``: ask several teachers (OpenAI-compatible chat APIs) for reasoning traces, never losing work.

Every (question, teacher, sample) becomes one :class:`~forkctl.records.TeacherResponse` line in ``--out``, appended
by a single ``write`` as soon as its response arrives, so a run killed at any instant (SIGKILL included) keeps
every finished line whole and a rerun requests only what is missing. Requests go through ``openai.AsyncOpenAI``
with its own retries off (``max_retries=0``): this module retries 429/5xx/timeouts/connection errors/malformed or
empty responses itself, with exponential backoff, jitter and ``Retry-After``, so retries are counted and a
teacher's rate limit slows only that teacher. A request that still fails is recorded with its ``error`` so the
run finishes; ``--retry-failed`` asks for those again on a later run.

API keys are read from the environment variable a teacher *names*; the value is only ever handed to the client
and scrubbed from error messages, never written to records, the saved config or the console.
"""

from __future__ import annotations

from forkctl.errors import UserError
import asyncio
import email.utils
import json
import logging
import random
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from forkctl.config import CollectConfig, ConfigError, load_yaml, package_versions
from forkctl.records import JsonlAppender, Question, TeacherResponse, read_records, repair_tail, write_json, \
    write_records

log = logging.getLogger(__name__)

TEACHER_KEYS = ("name", "base_url", "model", "api_key_env", "samples", "concurrency", "rpm", "params", "price",
                "timeout", "send_n")
PARAM_KEYS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "reasoning_effort", "extra_body",
              "seed", "stop", "presence_penalty", "frequency_penalty")
PRICE_KEYS = ("input_per_mtok", "output_per_mtok")
MAX_RETRY_AFTER_S = 600.0  # a server asking for more than this is treated as asking for this


# --------------------------------------------------------------------------------------------------
# Teachers file


@dataclass
class Teacher:
    """One source of traces: a model behind an OpenAI-compatible base URL, with its sampling and limits.

    The same model at two reasoning efforts is two teachers (two names)."""

    name: str
    base_url: str
    model: str
    api_key_env: str | None = None
    samples: int | None = None
    concurrency: int | None = None
    rpm: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    price: dict[str, float] | None = None
    timeout: float | None = None
    send_n: bool = True  # false for servers that reject n > 1 (one request per sample then)

    def identity(self) -> dict[str, Any]:
        """What decides the responses: a teacher of this name must not change it between resumed runs."""
        return {"model": self.model, "params": self.params}

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        if self.price is None:
            return None
        return (prompt_tokens * self.price.get("input_per_mtok", 0.0)
                + completion_tokens * self.price.get("output_per_mtok", 0.0)) / 1e6


def load_teachers(path: str | Path) -> list[Teacher]:
    """Parse and validate a teachers YAML file (``teachers: [...]``); errors name the file, teacher and key."""
    data = load_yaml(path)
    unknown = sorted(set(data) - {"teachers"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(unknown)}; expected 'teachers'")
    items = data.get("teachers")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{path}: 'teachers' must be a non-empty list")
    teachers = [_teacher_from(item, f"{path}: teachers[{i}]") for i, item in enumerate(items)]
    seen: set[str] = set()
    for i, t in enumerate(teachers):
        if t.name in seen:
            raise ConfigError(f"{path}: teachers[{i}]: duplicate name {t.name!r} (each teacher needs its own name)")
        seen.add(t.name)
    return teachers


def _teacher_from(item: Any, where: str) -> Teacher:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a mapping")
    if isinstance(item.get("name"), str):
        where = f"{where} ({item['name']})"
    _reject_unknown(item, TEACHER_KEYS, where)
    for key in ("name", "base_url", "model"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise ConfigError(f"{where}: '{key}' is required (a non-empty string)")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", item["name"]):
        raise ConfigError(f"{where}: 'name' may use only letters, digits, '_', '.', '-'")
    env = item.get("api_key_env")
    if env is not None and (not isinstance(env, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env)):
        raise ConfigError(f"{where}: 'api_key_env' is the NAME of an environment variable (e.g. R1_API_KEY), "
                          f"not a key")
    for key in ("samples", "concurrency"):
        if item.get(key) is not None and (not isinstance(item[key], int) or item[key] < 1):
            raise ConfigError(f"{where}: '{key}' must be an integer >= 1")
    for key in ("rpm", "timeout"):
        if item.get(key) is not None and (not isinstance(item[key], (int, float)) or item[key] <= 0):
            raise ConfigError(f"{where}: '{key}' must be a number > 0")
    params = item.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: 'params' must be a mapping")
    _reject_unknown(params, PARAM_KEYS, f"{where}: params")
    if "extra_body" in params and not isinstance(params["extra_body"], (dict, type(None))):
        raise ConfigError(f"{where}: params.extra_body must be a mapping")
    price = item.get("price")
    if price is not None:
        if not isinstance(price, dict):
            raise ConfigError(f"{where}: 'price' must be a mapping")
        _reject_unknown(price, PRICE_KEYS, f"{where}: price")
        if not all(isinstance(v, (int, float)) and v >= 0 for v in price.values()):
            raise ConfigError(f"{where}: prices must be numbers >= 0 (per million tokens)")
        price = {k: float(v) for k, v in price.items()}
    send_n = item.get("send_n", True)
    if not isinstance(send_n, bool):
        raise ConfigError(f"{where}: 'send_n' must be true or false")
    return Teacher(name=item["name"], base_url=item["base_url"], model=item["model"], api_key_env=env,
                   samples=item.get("samples"), concurrency=item.get("concurrency"), rpm=item.get("rpm"),
                   params={k: v for k, v in params.items() if v is not None}, price=price,
                   timeout=item.get("timeout"), send_n=send_n)


def _reject_unknown(data: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")


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

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.stats.values())


def config_path_for(out: Path) -> Path:
    return out.with_name(out.stem + ".config.json")


# --------------------------------------------------------------------------------------------------
# The stage


def run_collect(cfg: CollectConfig) -> CollectResult:
    progress = not cfg.quiet
    cfg.validate()
    teachers = load_teachers(cfg.teachers)  # type: ignore[arg-type]
    keys = _api_keys(teachers)
    questions = _load_questions(cfg)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        done = _recorded_keys(out, cfg.retry_failed)
        config_path = config_path_for(out)
        _check_and_save_config(config_path, cfg, teachers, questions)
        jobs = {t.name: _jobs_for(t, questions, cfg.samples, done) for t in teachers}
        stats = {t.name: TeacherStats() for t in teachers}
        for t in teachers:
            total = len(questions) * (t.samples or cfg.samples)
            stats[t.name].skipped = total - sum(len(s) for _, s in jobs[t.name])
        start = time.monotonic()
        with JsonlAppender(out) as appender, _Progress(progress, jobs, stats) as bar:
            asyncio.run(_collect_all(cfg, teachers, keys, jobs, stats, appender, bar.advance))
    return CollectResult(out, config_path, teachers, stats, time.monotonic() - start)


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


def _load_questions(cfg: CollectConfig) -> list[Question]:
    from forkctl.tasks import get_task

    task = get_task(cfg.task)  # type: ignore[arg-type]
    cfg.prompt_template = cfg.prompt_template or task.prompt_template  # resolved, so the saved config says it
    questions = task.load()
    if cfg.limit is not None:
        questions = questions[: cfg.limit]
    if not questions:
        raise UserError(f"{cfg.task}: no questions")
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise UserError(f"{cfg.task}: question id {dup!r} appears more than once (ids key the records)")
    return questions


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


def _check_and_save_config(path: Path, cfg: CollectConfig, teachers: list[Teacher],
                           questions: list[Question]) -> None:
    """Refuse to resume into records made by a same-named teacher with another model or sampling; then save
    the resolved config (teachers by env-var name only) beside the records."""
    previous: dict[str, Any] = {}
    if path.exists():
        try:
            previous = json.loads(path.read_text()).get("teachers", {})
        except (json.JSONDecodeError, AttributeError):
            previous = {}
    for t in teachers:
        old = previous.get(t.name)
        if old is not None and {"model": old.get("model"), "params": old.get("params", {})} != t.identity():
            raise UserError(f"teacher {t.name}: model or params differ from the run that wrote {cfg.out} "
                             f"(see {path}); give the changed teacher a new name or use another --out")
    merged = {**previous, **{t.name: asdict(t) for t in teachers}}
    write_json(path, {"config": asdict(cfg), "teachers": merged, "num_questions": len(questions),
                      "versions": package_versions()})


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
    """Requests-per-minute as evenly spaced start times; ``pause`` pushes every later start back (Retry-After)."""

    def __init__(self, rpm: float | None) -> None:
        self.interval = 60.0 / rpm if rpm else 0.0
        self._next = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)

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
                 stats: TeacherStats, write: Callable[[TeacherResponse], None]) -> None:
        from openai import AsyncOpenAI

        self.t, self.cfg, self.global_sem, self.stats, self.write = t, cfg, global_sem, stats, write
        self._secret = api_key if api_key != "EMPTY" else None
        # max_retries=0: this class retries, so it can count retries and honour Retry-After per teacher.
        self.client = AsyncOpenAI(base_url=t.base_url, api_key=api_key, timeout=t.timeout or cfg.timeout,
                                  max_retries=0)
        self.limiter = RateLimiter(t.rpm)
        self.template: str = cfg.prompt_template or "{problem}"
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
                    {"role": "user", "content": self.template.replace("{problem}", q.problem)}]
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
        from forkctl.verify.math import extract_answer

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
                answer=extract_answer(text) or (extract_answer(reasoning) if reasoning else None),
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
                       appender: JsonlAppender, advance: Callable[[TeacherResponse], None]) -> None:
    global_sem = asyncio.Semaphore(cfg.concurrency)

    def write(record: TeacherResponse) -> None:
        appender.write(record)  # one os.write per line: a kill never tears it
        advance(record)

    runners = [_TeacherRunner(t, keys[t.name], cfg, global_sem, stats[t.name], write) for t in teachers
               if jobs[t.name]]
    await asyncio.gather(*(r.run(jobs[r.t.name]) for r in runners))


# --------------------------------------------------------------------------------------------------
# Progress and summary


class _Progress:
    """A rich progress bar with ETA over every record this run will write (no-op when disabled)."""

    def __init__(self, enabled: bool, jobs: dict[str, list[tuple[Question, list[int]]]],
                 stats: dict[str, TeacherStats]) -> None:
        self.enabled, self.stats = enabled, stats
        self.total = sum(len(s) for js in jobs.values() for _, s in js)
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self.enabled and self.total:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
                TimeRemainingColumn

            self._progress = Progress(TextColumn("collect"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                      TimeRemainingColumn(), console=Console(stderr=True))
            self._progress.start()
            self._task = self._progress.add_task("collect", total=self.total, status="")
        return self

    def advance(self, record: TeacherResponse) -> None:
        if self._progress is not None:
            failed = sum(s.failed for s in self.stats.values())
            retried = sum(s.retried for s in self.stats.values())
            self._progress.update(self._task, advance=1, status=f"failed {failed} · retried {retried}")

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def summary_table(result: CollectResult) -> Any:
    """Per teacher: ok / failed / retried, tokens in/out, cost, latency p50/p95 (this run)."""
    from rich.table import Table

    table = Table(title=f"collect · {result.out_path} · {result.elapsed_s:.1f}s")
    for col in ("teacher", "ok", "failed", "retried", "skipped", "tok in", "tok out", "cost $", "p50 s", "p95 s"):
        table.add_column(col, justify="left" if col == "teacher" else "right")
    total_cost: float | None = None
    for t in result.teachers:
        s = result.stats[t.name]
        cost = t.cost(s.prompt_tokens, s.completion_tokens)
        if cost is not None:
            total_cost = (total_cost or 0.0) + cost
        p50, p95 = s.percentile(0.5), s.percentile(0.95)
        table.add_row(t.name, str(s.ok), str(s.failed), str(s.retried), str(s.skipped), f"{s.prompt_tokens:,}",
                      f"{s.completion_tokens:,}", "-" if cost is None else f"{cost:.4f}",
                      "-" if p50 is None else f"{p50:.2f}", "-" if p95 is None else f"{p95:.2f}")
    if total_cost is not None:
        table.caption = f"total cost ${total_cost:.4f} (teachers with a price)"
    return table

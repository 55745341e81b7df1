"""The teachers file (``--teachers``): which models to ask, how, and at what price.

A concept module shared by ``collect`` (which sends the requests) and ``filter`` (which orders traces by the
teachers file), so that neither stage imports the other. Also here: the name of the run-config file collect
writes beside its records, which is where filter learns the teachers' order.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forkctl.config import ConfigError, load_yaml

TEACHER_KEYS = ("name", "base_url", "model", "api_key_env", "samples", "concurrency", "rpm", "params", "price",
                "timeout", "send_n")
PARAM_KEYS = ("temperature", "top_p", "max_tokens", "max_completion_tokens", "reasoning_effort", "extra_body",
              "seed", "stop", "presence_penalty", "frequency_penalty")
PRICE_KEYS = ("input_per_mtok", "output_per_mtok")


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

    @property
    def samples_should_differ(self) -> bool:
        """Whether this teacher samples: temperature > 0, or unset (the API's default is 1.0)."""
        temperature = self.params.get("temperature")
        return temperature is None or float(temperature) > 0

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


def traces_config_path(out: str | Path) -> Path:
    """Collect's run config beside its records: ``traces.jsonl`` -> ``traces.config.json``."""
    out = Path(out)
    return out.with_name(out.stem + ".config.json")


def teacher_order(traces: str | Path, present: set[str]) -> list[str]:
    """The teachers of ``present`` in the order of the teachers file that collected ``traces`` (read from collect's
    run config beside them), then any others by name."""
    order: list[str] = []
    path = traces_config_path(traces)
    if path.exists():
        try:
            order = [t for t in json.loads(path.read_text()).get("teachers", {}) if t in present]
        except (json.JSONDecodeError, AttributeError):
            order = []  # a damaged config only loses the order, never the traces
    return order + sorted(present - set(order))

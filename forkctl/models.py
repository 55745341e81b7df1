"""Loading models and tokenizers: where a model name points, and (see the functions below) one dtype policy.

Heavy imports (torch, transformers) stay inside the functions: ``forkctl --help`` imports this module's callers.
"""

from __future__ import annotations

import re
from pathlib import Path

from forkctl.errors import UserError

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")  # "gpt2" or "org/name"


def looks_local(name: str) -> bool:
    """Whether ``name`` can only mean a local folder: an explicit path, or 'dir/x' where 'dir' exists here
    (``runs/ssft`` when ``runs/`` exists is a folder that is missing, not a Hub repository)."""
    if name.startswith(("/", "./", "../", "~")) or name.endswith("/") or name in (".", ".."):
        return True
    if not _HUB_ID.match(name):
        return name.count("/") > 1 or "\\" in name
    return "/" in name and Path(name.split("/")[0]).is_dir()


def check_model_path(name: str | None, option: str = "--model") -> None:
    """Refuse at once a model that is neither an existing local folder nor a possible Hub id, before any Hub
    call (which would retry for a minute and end in a misleading 'Repo id must be in the form' traceback)."""
    if not name:
        return
    path = Path(name).expanduser()
    if path.exists():
        if path.is_dir() and not (path / "config.json").exists():
            raise UserError(f"{option} {name}: the folder has no config.json, so it is not a model folder")
        return
    if looks_local(name) or not _HUB_ID.match(name):
        raise UserError(f"{option} {name}: no such model folder (and not a Hugging Face Hub id such as "
                        f"Qwen/Qwen2.5-7B-Instruct)")

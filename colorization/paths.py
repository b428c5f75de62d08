"""Default locations, all derived from COLORIZATION_HOME (a local folder or an s3:// URL)."""

from __future__ import annotations

import os
from pathlib import Path

from colorization import storage
from colorization.constants import (
    CURATION_DIR,
    DATASETS_DIR,
    DEFAULT_HOME,
    HOME_ENV,
    MODELS_DIR,
    RUNS_DIR,
)


def home() -> str:
    """The storage root: $COLORIZATION_HOME, or ~/.colorization when unset."""
    raw = os.environ.get(HOME_ENV, "").strip() or DEFAULT_HOME
    if storage.is_remote(raw):
        return raw.rstrip("/")
    return os.path.abspath(os.path.expanduser(raw))


def datasets_root() -> str:
    """Where prepared dataset snapshots live."""
    return storage.join(home(), DATASETS_DIR)


def models_root() -> str:
    """Where model versions and the champion pointer live."""
    return storage.join(home(), MODELS_DIR)


def cache_root() -> Path:
    """This machine's cache of copies of remote files: $XDG_CACHE_HOME/colorization."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "colorization"


def curation_root() -> str:
    """Where curation results live (the exclusion list)."""
    return storage.join(home(), CURATION_DIR)


def runs_root() -> str:
    """Where training runs keep their resumable checkpoints (always a local folder)."""
    root = home()
    if storage.is_remote(root):
        # Checkpoints are rewritten often; keep them on local disk next to the process.
        return os.path.abspath(os.path.expanduser(os.path.join(DEFAULT_HOME, RUNS_DIR)))
    return os.path.join(root, RUNS_DIR)

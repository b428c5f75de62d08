"""Resumable training checkpoints: atomic files under a run folder, the newest readable wins.

`<run>/checkpoints/step-00000012.pt` holds everything needed to continue a run exactly:
both networks, both optimisers, the GradScaler, the position (epoch, batch within it,
steps), the loss sums of the epoch so far, and every RNG state of every rank (torch, CUDA,
numpy, Python) at that step and at the start of its epoch (the loader's shuffle and
augmentation draws are replayed from the latter). Files load with `weights_only=True`.
"""

from __future__ import annotations

import io
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from colorization import storage
from colorization.constants import CHECKPOINT_DIR, KEEP_CHECKPOINTS

logger = logging.getLogger(__name__)

_PREFIX, _SUFFIX = "step-", ".pt"
_REQUIRED = ("trainer", "epoch", "batch", "steps", "rng", "epoch_rng")


def rng_state() -> dict[str, Any]:
    """This process's RNG states, in types `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos),
                  int(has_gauss), float(cached)],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def checkpoint_dir(run_dir: Path) -> Path:
    return run_dir / CHECKPOINT_DIR


def save(run_dir: Path, payload: dict[str, Any]) -> Path:
    """Write `payload` atomically as the newest checkpoint; keep the newest few."""
    folder = checkpoint_dir(run_dir)
    path = folder / f"{_PREFIX}{payload['steps']:08d}{_SUFFIX}"
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    storage.write_bytes(str(path), buffer.getvalue())  # temp file + rename
    for old in _listed(folder)[KEEP_CHECKPOINTS:]:
        old.unlink(missing_ok=True)
    return path


def load_latest(run_dir: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint of a run, or None; an unreadable one is named in a
    warning and the one before it is used."""
    for path in _listed(checkpoint_dir(run_dir)):
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            missing = [key for key in _REQUIRED if key not in payload]
            if missing:
                raise ValueError(f"missing {missing}")
        except Exception as exc:  # noqa: BLE001 - any unreadable file: fall back, say why
            logger.warning("checkpoint %s is unreadable (%s: %s); falling back to the "
                           "previous one", path, type(exc).__name__, exc)
            continue
        logger.info("resuming from %s (epoch %d, batch %d, step %d)", path,
                    payload["epoch"] + 1, payload["batch"], payload["steps"])
        return payload
    return None


def _listed(folder: Path) -> list[Path]:
    """Checkpoints, newest first."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir()
                   if p.name.startswith(_PREFIX) and p.name.endswith(_SUFFIX)), reverse=True)

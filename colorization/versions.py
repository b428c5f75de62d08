"""Model versions: `<models>/<model-id>/generator.pt` + `card.json`, and a champion pointer.

generator.pt is a plain state dict (loads with `torch.load(weights_only=True)`); card.json
holds the architecture, config, dataset digest, metrics and lineage. The card is written
after the weights, so a version with a card is complete.

Lineage keys of a card (train.py writes most; `save_version` adds the code's):
`dataset` (URL), `dataset_snapshot` (its id), `dataset_manifest_sha256`, `train_config`,
`parent`, `code_version` (package version), `git_commit` and `git_dirty` (null when
unknown), `created_at`, `training` (epochs, steps, seconds, precision, ...), `hardware`
(device, device_name, precision, ...), `metrics` (the latest evaluation's means).

The champion pointer `<models>/champion` is one JSON object, rewritten whole (atomically:
a local rename or one S3 PUT): `model_id`, `promoted_at`, `reason` of the current champion,
and `history`, every decision in order, refusals too (see `record_decision`).
"""

from __future__ import annotations

import functools
import io
import logging
import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from colorization import __version__, paths, storage
from colorization.constants import CARD_NAME, CHAMPION_POINTER, GIT_COMMIT_ENV, WEIGHTS_NAME
from colorization.models import (
    GENERATORS,
    ModelSpec,
    UNetGenerator,
    Variant,
    build_generator,
    without_pretrained,
)

logger = logging.getLogger(__name__)


def _root(models_root: str | None) -> str:
    return models_root or paths.models_root()


def new_model_id(stage: str) -> str:
    """Sortable, unique id: `<UTC time>-<stage>-<random>`."""
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{stage}-{secrets.token_hex(3)}"


def save_version(
    generator: nn.Module, card: dict[str, Any], *, model_id: str, models_root: str | None = None
) -> str:
    """Write weights then card; returns the version's URL."""
    url = storage.join(_root(models_root), model_id)
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in generator.state_dict().items()}, buffer)
    storage.write_bytes(storage.join(url, WEIGHTS_NAME), buffer.getvalue())
    full_card = {"model_id": model_id, "code_version": __version__, **code_commit(),
                 "created_at": _now(), "metrics": {}, **card}
    storage.write_json(storage.join(url, CARD_NAME), full_card)
    logger.info("saved model version %s", url)
    return url


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def code_commit() -> dict[str, Any]:
    """{"git_commit", "git_dirty"} of the running code: $COLORIZATION_GIT_COMMIT when set
    (images built without .git), else the checkout the package runs from; None when
    unknown (installed from a wheel, no git)."""
    env = os.environ.get(GIT_COMMIT_ENV, "").strip()
    if env:
        return {"git_commit": env, "git_dirty": None}
    return dict(_checkout_commit())


@functools.cache
def _checkout_commit() -> tuple[tuple[str, Any], ...]:
    package = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=package, capture_output=True, text=True,
                                  timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):  # no git, or it hung
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    # Only a checkout that tracks this very file names the code (not a venv inside one).
    if git("ls-files", "--error-unmatch", Path(__file__).name) is None:
        return (("git_commit", None), ("git_dirty", None))
    status = git("status", "--porcelain", "--untracked-files=no")  # the whole checkout
    return (("git_commit", git("rev-parse", "HEAD")),
            ("git_dirty", None if status is None else bool(status)))


def champion(*, models_root: str | None = None) -> str | None:
    """The promoted model id, or None when nothing is promoted yet."""
    pointer = champion_pointer(models_root=models_root)
    return pointer["model_id"] if pointer else None


def champion_pointer(*, models_root: str | None = None) -> dict[str, Any] | None:
    """The champion pointer (`model_id`, `promoted_at`, `reason`, `history`), or None."""
    url = storage.join(_root(models_root), CHAMPION_POINTER)
    return storage.read_json(url) if storage.exists(url) else None


def history(*, models_root: str | None = None) -> list[dict[str, Any]]:
    """Every decision about the champion, oldest first (promotions, refusals, forced)."""
    pointer = champion_pointer(models_root=models_root)
    return list(pointer.get("history", [])) if pointer else []


def record_decision(decision: dict[str, Any], *, models_root: str | None = None
                    ) -> dict[str, Any]:
    """Append a gate decision to the champion's history; when `decision["promoted"]`, the
    pointer moves to `decision["challenger"]` in the same write. Returns the stored entry.

    An entry holds what the caller decided (`challenger`, `promoted`, `forced`, `reason`,
    and for gated decisions `champion`, `rule`, `dataset`, `metrics`, `checks`, ...) plus
    `model_id` (the champion after the decision) and `decided_at`."""
    root = _root(models_root)
    challenger = decision["challenger"]
    if not storage.exists(storage.join(root, challenger, CARD_NAME)):
        raise FileNotFoundError(f"{storage.join(root, challenger)}: no such model version")
    pointer = champion_pointer(models_root=root)
    if pointer is None and not decision["promoted"]:
        raise ValueError(f"{challenger}: a refusal needs a champion to keep")
    entry = {"decided_at": _now(), **decision}
    if decision["promoted"]:
        current = {"model_id": challenger, "promoted_at": entry["decided_at"],
                   "reason": decision.get("reason", "")}
    else:
        assert pointer is not None
        current = {k: pointer[k] for k in ("model_id", "promoted_at", "reason") if k in pointer}
    entry["model_id"] = current["model_id"]
    past = pointer.get("history", []) if pointer else []
    # One write of the whole object: a crash leaves the old pointer or the new one.
    storage.write_json(storage.join(root, CHAMPION_POINTER),
                       {**current, "history": [*past, entry]})
    logger.info("%s %s: %s", "promoted" if decision["promoted"] else "kept the champion over",
                challenger, decision.get("reason", ""))
    return entry


def promote(model_id: str, *, models_root: str | None = None, reason: str = "",
            forced: bool = True) -> dict[str, Any]:
    """Make `model_id` the champion without the gate (`colorize models promote --force`;
    the first model); recorded in the history with `forced`. Returns the entry."""
    previous = champion(models_root=models_root)
    return record_decision({"challenger": model_id, "champion": previous, "promoted": True,
                            "forced": forced, "reason": reason}, models_root=models_root)


def promote_if_none(model_id: str, *, models_root: str | None = None) -> bool:
    """Promote `model_id` when no model is promoted yet; returns whether it was."""
    if champion(models_root=models_root) is not None:
        return False
    promote(model_id, models_root=models_root, reason="first model", forced=False)
    return True


def resolve(ref: str | None = None, *, models_root: str | None = None) -> str:
    """URL of a model version from an id, a path/URL of a version folder, or None (champion)."""
    root = _root(models_root)
    if ref is None:
        ref = champion(models_root=root)
        if ref is None:
            raise FileNotFoundError(f"{root}: no promoted model yet; run `colorize retrain` "
                                    "or pass --model")
    for candidate in (ref, storage.join(root, ref)):
        if storage.exists(storage.join(candidate, CARD_NAME)):
            return candidate.rstrip("/")
    raise FileNotFoundError(f"model {ref!r}: not a version folder nor an id under {root}")


def list_versions(*, models_root: str | None = None) -> list[dict[str, Any]]:
    """Cards of all versions, oldest first."""
    root = _root(models_root)
    try:
        urls = storage.list_files(root)
    except FileNotFoundError:  # nothing saved yet
        return []
    cards = [storage.read_json(url) for url in urls if url.endswith("/" + CARD_NAME)]
    return sorted(cards, key=lambda card: card["model_id"])


def read_card(ref: str | None = None, *, models_root: str | None = None) -> dict[str, Any]:
    """The card of a model version."""
    return storage.read_json(storage.join(resolve(ref, models_root=models_root), CARD_NAME))


def update_card(ref: str, updates: dict[str, Any], *, models_root: str | None = None) -> None:
    """Merge `updates` into a version's card (e.g. evaluation metrics)."""
    url = storage.join(resolve(ref, models_root=models_root), CARD_NAME)
    storage.write_json(url, {**storage.read_json(url), **updates})


def load_generator(
    ref: str | None = None, *, models_root: str | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a version's generator from its card and weights; returns (model in eval, card)."""
    url = resolve(ref, models_root=models_root)
    card = storage.read_json(storage.join(url, CARD_NAME))
    # The saved state dict replaces any pretrained weights: do not fetch them again.
    spec = _upgrade_spec(ModelSpec.from_dict(card["generator"]))
    model = build_generator(without_pretrained(spec))
    state = torch.load(io.BytesIO(storage.read_bytes(storage.join(url, WEIGHTS_NAME))),
                       map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval(), card


def _upgrade_spec(spec: ModelSpec) -> ModelSpec:
    """Cards written before variants were guarded may say `unet_256` with another depth;
    the generic `unet` entry builds exactly what they describe."""
    variant = GENERATORS.get(spec.name)
    if isinstance(variant, Variant) and variant.cls is UNetGenerator and any(
            spec.options.get(key, value) != value for key, value in variant.fixed.items()):
        return ModelSpec("unet", spec.options)
    return spec

"""Model versions: `<models>/<model-id>/generator.pt` + `card.json`, and a champion pointer.

generator.pt is a plain state dict (loads with `torch.load(weights_only=True)`); card.json
holds the architecture, config, dataset digest, metrics and lineage. The card is written
after the weights, so a version with a card is complete.
"""

from __future__ import annotations

import io
import logging
import secrets
import time
from typing import Any

import torch
from torch import nn

from colorization import __version__, paths, storage
from colorization.constants import CARD_NAME, CHAMPION_POINTER, WEIGHTS_NAME
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
    full_card = {"model_id": model_id, "code_version": __version__,
                 "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "metrics": {}, **card}
    storage.write_json(storage.join(url, CARD_NAME), full_card)
    logger.info("saved model version %s", url)
    return url


def champion(*, models_root: str | None = None) -> str | None:
    """The promoted model id, or None when nothing is promoted yet."""
    pointer = storage.join(_root(models_root), CHAMPION_POINTER)
    if not storage.exists(pointer):
        return None
    return storage.read_json(pointer)["model_id"]


def promote(model_id: str, *, models_root: str | None = None, reason: str = "") -> None:
    """Make `model_id` the champion; the pointer keeps the history of promotions."""
    root = _root(models_root)
    if not storage.exists(storage.join(root, model_id, CARD_NAME)):
        raise FileNotFoundError(f"{storage.join(root, model_id)}: no such model version")
    pointer = storage.join(root, CHAMPION_POINTER)
    history = storage.read_json(pointer).get("history", []) if storage.exists(pointer) else []
    entry = {"model_id": model_id, "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                 time.gmtime()), "reason": reason}
    storage.write_json(pointer, {**entry, "history": [*history, entry]})
    logger.info("promoted %s", model_id)


def promote_if_none(model_id: str, *, models_root: str | None = None) -> bool:
    """Promote `model_id` when no model is promoted yet; returns whether it was."""
    if champion(models_root=models_root) is not None:
        return False
    promote(model_id, models_root=models_root, reason="first model")
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

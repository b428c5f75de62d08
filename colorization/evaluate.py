"""Run a model over a snapshot's validation split and record metrics in its card."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from colorization import color, metrics, versions
from colorization.constants import (
    DEFAULT_DEVICE,
    DEFAULT_EVAL_BATCH,
    DEFAULT_EVAL_SPLIT,
    DEFAULT_PRECISION,
)
from colorization.data import LoaderConfig, make_loader
from colorization.devices import autocast, select_device, select_precision

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """Options of `evaluate_model`."""

    split: str = DEFAULT_EVAL_SPLIT
    batch_size: int = DEFAULT_EVAL_BATCH
    device: str = DEFAULT_DEVICE
    precision: str = DEFAULT_PRECISION


@torch.no_grad()
def evaluate_model(
    model: str, *, dataset: str, config: EvalConfig | None = None,
    models_root: str | None = None,
) -> dict[str, float]:
    """Mean metrics of `model` on one split, also merged into the model card.

    PSNR compares the colorized RGB with the ground truth; `psnr_grayscale` is the same for
    the L channel alone (ab = 0), the baseline a colorizer must beat; colourfulness is
    reported for the predictions and the ground truth.
    """
    config = config or EvalConfig()
    device = select_device(config.device)
    precision = select_precision(config.precision, device=device)
    generator, card = versions.load_generator(model, models_root=models_root, device=device)
    loader = make_loader(dataset, config.split, LoaderConfig(
        batch_size=config.batch_size, shuffle=False, augment=False))
    totals: dict[str, float] = {}
    count = 0
    for l_norm, ab in loader:
        l_norm, ab = l_norm.to(device), ab.to(device)
        truth = color.model_output_to_rgb(l_norm, ab)  # [B, 3, S, S]
        with autocast(device, precision):
            ab_pred = generator(l_norm)  # [B, 2, S, S]
        pred = color.model_output_to_rgb(l_norm, ab_pred.float())
        gray = color.model_output_to_rgb(l_norm, torch.zeros_like(ab))
        per_image = {
            "psnr": metrics.psnr(pred, truth),
            "psnr_grayscale": metrics.psnr(gray, truth),
            "colorfulness": metrics.colorfulness(pred),
            "colorfulness_ground_truth": metrics.colorfulness(truth),
        }
        for key, values in per_image.items():
            totals[key] = totals.get(key, 0.0) + float(values.sum())
        count += l_norm.shape[0]
    if count == 0:
        raise ValueError(f"{dataset}: split {config.split!r} is empty")
    result: dict[str, Any] = {key: round(value / count, 4) for key, value in totals.items()}
    result["images"] = count
    versions.update_card(model, {"metrics": result, "evaluated_on": {
        "dataset": dataset, "split": config.split}}, models_root=models_root)
    logger.info("evaluated %s on %s/%s: %s", card["model_id"], dataset, config.split, result)
    return result

"""Colorize photos at full resolution.

The generator sees the photo's L channel resized to its training size S; its ab [2, S, S]
is upsampled back to the photo's H x W and recombined with the original, full-resolution L,
so edges stay as sharp as the input.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from colorization import color, storage, versions
from colorization.constants import (
    DEFAULT_DEVICE,
    DEFAULT_INFERENCE_BATCH,
    DEFAULT_PRECISION,
    IMAGE_SUFFIXES,
    OUTPUT_JPEG_QUALITY,
)
from colorization.devices import Precision, autocast, select_device, select_precision

logger = logging.getLogger(__name__)


class Colorizer:
    """A loaded generator that turns PIL images (any mode, any size) into colour ones."""

    def __init__(self, generator: nn.Module, *, image_size: int, device: torch.device,
                 precision: Precision | None = None):
        self.generator, self.image_size, self.device = generator.eval(), image_size, device
        self.precision = precision or select_precision(DEFAULT_PRECISION, device=device)

    @classmethod
    def load(cls, model: str | None = None, *, device: str = DEFAULT_DEVICE,
             precision: str = DEFAULT_PRECISION, models_root: str | None = None) -> Colorizer:
        """From a model id, a version folder/URL, or None for the promoted champion."""
        torch_device = select_device(device)
        generator, card = versions.load_generator(model, models_root=models_root,
                                                  device=torch_device)
        logger.info("loaded model %s", card["model_id"])
        return cls(generator, image_size=card["image_size"], device=torch_device,
                   precision=select_precision(precision, device=torch_device))

    @torch.no_grad()
    def colorize(self, images: list[Image.Image]) -> list[Image.Image]:
        """Colorize a batch; each output has its input's size."""
        if not images:
            return []
        full_l = []  # each [1, 1, H, W], normalised
        small_l = []  # each [1, 1, S, S]
        for img in images:
            rgb = color.image_to_tensor(img.convert("RGB")).unsqueeze(0).to(self.device)
            l_norm = color.normalize_l(color.rgb_to_lab(rgb)[:, :1])
            full_l.append(l_norm)
            small_l.append(F.interpolate(l_norm, size=(self.image_size, self.image_size),
                                         mode="bilinear", antialias=True, align_corners=False))
        with autocast(self.device, self.precision):
            ab_small = self.generator(torch.cat(small_l))  # [B, 2, S, S]
        outputs = []
        for index, l_norm in enumerate(full_l):
            ab = F.interpolate(ab_small[index:index + 1].float(), size=l_norm.shape[-2:],
                               mode="bilinear", align_corners=False)  # [1, 2, H, W]
            outputs.append(color.tensor_to_image(color.model_output_to_rgb(l_norm, ab)[0]))
        return outputs


@dataclass
class ColorizeReport:
    """What a `colorize_paths` call did."""

    written: list[str] = field(default_factory=list)
    skipped_existing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # input URL -> error
    seconds: float = 0.0


def plan_outputs(inputs: list[str], out: str) -> list[tuple[str, str]]:
    """(input, output) URL pairs: folders keep their relative layout, files go flat.

    Raises ValueError naming the input when a file is not an image or a folder holds none,
    and FileNotFoundError when an input does not exist.
    """
    pairs = []
    for item in inputs:
        if storage.exists(item):  # a file (local) or an object (S3)
            if not item.lower().endswith(IMAGE_SUFFIXES):
                raise ValueError(f"{item}: not an image file (expected {_suffix_list()})")
            pairs.append((item, storage.join(out, PurePosixPath(item.rstrip("/")).name)))
            continue
        urls = storage.list_files(item, suffixes=IMAGE_SUFFIXES)
        if not urls:
            raise ValueError(f"{item}: no image files found (looked for {_suffix_list()})")
        pairs.extend((url, storage.join(out, storage.relative_key(url, item))) for url in urls)
    return pairs


def _suffix_list() -> str:
    return ", ".join(IMAGE_SUFFIXES)


def colorize_paths(
    inputs: list[str], *, out: str, model: str | None = None,
    batch_size: int = DEFAULT_INFERENCE_BATCH, device: str = DEFAULT_DEVICE,
    precision: str = DEFAULT_PRECISION, overwrite: bool = False, models_root: str | None = None,
) -> ColorizeReport:
    """Colorize image files and folders (local or s3://) into `out`.

    Broken images are reported in the result and skipped; existing outputs are kept unless
    `overwrite`, so an interrupted call resumes. Inputs are only read.
    """
    started = time.monotonic()
    pairs = plan_outputs(inputs, out)
    report = ColorizeReport()
    todo = []
    for source, target in pairs:
        if not overwrite and storage.exists(target):
            report.skipped_existing.append(target)
        else:
            todo.append((source, target))
    if todo:
        colorizer = Colorizer.load(model, device=device, precision=precision,
                                   models_root=models_root)
        for start in range(0, len(todo), batch_size):
            batch = []
            for source, target in todo[start:start + batch_size]:
                try:
                    batch.append((source, target, color.load_image(
                        storage.read_bytes(source), name=source)))
                except (OSError, ValueError) as exc:
                    logger.warning("skipping %s: %s", source, exc)
                    report.failed[source] = str(exc)
            results = colorizer.colorize([img for _, _, img in batch])
            for (source, target, _), result in zip(batch, results, strict=True):
                try:
                    storage.write_bytes(target, color.encode_image(
                        result, suffix=PurePosixPath(target).suffix,
                        quality=OUTPUT_JPEG_QUALITY))
                except (OSError, ValueError) as exc:  # like a failed read: report, go on
                    logger.warning("cannot write %s: %s", target, exc)
                    report.failed[source] = f"cannot write {target}: {exc}"
                    continue
                report.written.append(target)
            logger.info("colorized %d/%d images", min(start + batch_size, len(todo)),
                        len(todo))
    report.seconds = round(time.monotonic() - started, 3)
    return report

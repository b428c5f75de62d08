"""Export a model version's generator for serving without this package.

Formats are entries of `EXPORT_FORMATS` (name -> how to write it). `onnx`: one self-contained
.onnx file (opset ONNX_OPSET) with

- input `l`: float32 [N, 1, H, W], L normalised as the generator takes it (L / 50 - 1, so
  L in [0, 100] becomes [-1, 1]; `colorization.color.normalize_l`);
- output `ab`: float32 [N, 2, H, W] in [-1, 1]; a*b* = ab x 110 (`denormalize_ab`).

N, H and W are dynamic: the U-Nets pad any size up to their multiple inside the graph and
crop back. The model's id, architecture and this convention are in the file's metadata.
`onnxruntime` runs it; the export test checks its output against torch's on real photos.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from colorization import color, storage, versions
from colorization.constants import EXPORT_BASENAME, ONNX_OPSET

logger = logging.getLogger(__name__)

# The tensor contract of every export, written into the file's metadata too.
INPUT_NAME, OUTPUT_NAME = "l", "ab"
CONVENTION = (f"input {INPUT_NAME}: float32 [N, 1, H, W], L / {color.L_CENTER:g} - 1; "
              f"output {OUTPUT_NAME}: float32 [N, 2, H, W], a*b* / {color.AB_SCALE:g}; "
              "CIE Lab D65, sRGB")


@dataclass(frozen=True)
class ExportFormat:
    """How to write one format: `write(generator in eval mode, card, local file)`."""

    suffix: str
    description: str
    write: Callable[[nn.Module, dict[str, Any], Path], None]


def _write_onnx(generator: nn.Module, card: dict[str, Any], path: Path) -> None:
    import onnx  # the `export` extra; imported here so the rest runs without it

    size = int(card.get("image_size") or 256)
    # Batch 2 and odd, unequal sides: the tracer specialises 1-sized dims, equal dims and
    # the U-Nets' pad-to-a-multiple branch (taken here, so every size gets it; a pad of 0
    # is a no-op, while a graph traced without it fails on other sizes).
    example = torch.zeros(2, 1, size + 1, size + 3)
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"),
            3: torch.export.Dim("width")}
    program = torch.onnx.export(generator, (example,), input_names=[INPUT_NAME],
                                output_names=[OUTPUT_NAME], opset_version=ONNX_OPSET,
                                dynamic_shapes=({k: v for k, v in dims.items()},),
                                dynamo=True, verbose=False)
    if program is None:  # only when a file name is given; typed as optional
        raise RuntimeError("torch.onnx.export returned no program")
    program.save(str(path), external_data=False)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    for key, value in {"model_id": card["model_id"], "convention": CONVENTION,
                       "generator": json.dumps(card.get("generator")),
                       "image_size": str(size)}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = f"colorization generator {card['model_id']}: {CONVENTION}"
    onnx.save(model, str(path))


EXPORT_FORMATS: dict[str, ExportFormat] = {
    "onnx": ExportFormat(".onnx", "ONNX (onnxruntime, TensorRT, OpenVINO, ...)", _write_onnx),
}


def export_model(ref: str | None, *, export_format: str = "onnx", out: str | None = None,
                 models_root: str | None = None) -> str:
    """Write the generator of model `ref` (id or version URL; None: the champion) in
    `export_format`; returns where: `out`, else `<model>/generator<suffix>`."""
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {export_format!r}; known: "
                         f"{', '.join(sorted(EXPORT_FORMATS))}")
    spec = EXPORT_FORMATS[export_format]
    url = versions.resolve(ref, models_root=models_root)
    generator, card = versions.load_generator(url)
    target = out or storage.join(url, EXPORT_BASENAME + spec.suffix)
    with tempfile.TemporaryDirectory(prefix="colorization-export-") as tmp:
        local = Path(tmp) / (EXPORT_BASENAME + spec.suffix)
        spec.write(generator, card, local)
        storage.write_bytes(target, local.read_bytes())  # atomic, local or S3
    logger.info("exported %s as %s to %s", card["model_id"], export_format, target)
    return target

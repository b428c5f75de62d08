"""Constants and small helpers shared by the tests (importable: pytest puts tests/ on
sys.path)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from colorization import storage
from colorization.constants import WEIGHTS_NAME
from colorization.models import ModelSpec

FIXTURE_PHOTOS = Path(__file__).parent / "fixtures" / "photos"
# 4 levels x 8 channels: trains in well under a second per epoch on 32 px crops.
TINY_GENERATOR = ModelSpec("unet", {"num_downs": 4, "base_channels": 8})
TINY_IMAGE_SIZE = 32


def weights_of(result: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The saved generator.pt of a `train_stage` result."""
    raw = storage.read_bytes(storage.join(result["model_url"], WEIGHTS_NAME))
    return torch.load(io.BytesIO(raw), weights_only=True)

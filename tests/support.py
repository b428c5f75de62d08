"""Constants shared by the tests (importable: pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

from colorization.models import ModelSpec

FIXTURE_PHOTOS = Path(__file__).parent / "fixtures" / "photos"
# 4 levels x 8 channels: trains in well under a second per epoch on 32 px crops.
TINY_GENERATOR = ModelSpec("unet", {"num_downs": 4, "base_channels": 8})
TINY_IMAGE_SIZE = 32

"""Benchmark: full-resolution colorization throughput, batched vs one image at a time.

Baseline: `colorize_paths(batch_size=1)`; candidate: the default batch size. Both use a
freshly initialised `unet_256` at 256 px (cost does not depend on training) on the fixture
photos, on the CPU unless a GPU is present. Last line: one JSON object with `ratio`
(candidate images/s over baseline images/s).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "fixtures" / "photos"
N_IMAGES = 24


def main() -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        os.environ["COLORIZATION_HOME"] = tmp
        from colorization import versions
        from colorization.constants import DEFAULT_IMAGE_SIZE, DEFAULT_INFERENCE_BATCH
        from colorization.inference import colorize_paths
        from colorization.models import DEFAULT_GENERATOR, ModelSpec, build_generator

        spec = ModelSpec(DEFAULT_GENERATOR)
        versions.save_version(build_generator(spec, seed=0),
                              {"stage": "bench", "generator": spec.to_dict(),
                               "image_size": DEFAULT_IMAGE_SIZE}, model_id="bench")
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        for photo in sorted(PHOTOS.glob("*.jpg"))[:N_IMAGES]:
            (inputs / photo.name).write_bytes(photo.read_bytes())
        figures: dict[str, float] = {"images": N_IMAGES}
        for label, batch in (("baseline_batch_1", 1), ("batched", DEFAULT_INFERENCE_BATCH)):
            started = time.perf_counter()
            report = colorize_paths([str(inputs)], out=str(Path(tmp) / label), model="bench",
                                    batch_size=batch)
            seconds = time.perf_counter() - started
            assert len(report.written) == N_IMAGES, report.failed
            figures[f"{label}_images_per_s"] = round(N_IMAGES / seconds, 3)
            print(f"{label}: batch {batch}, {N_IMAGES / seconds:.2f} images/s", file=sys.stderr)
        figures["batch_size"] = DEFAULT_INFERENCE_BATCH
        figures["ratio"] = round(figures["batched_images_per_s"]
                                 / figures["baseline_batch_1_images_per_s"], 3)
    return figures


if __name__ == "__main__":
    print(json.dumps(main()))

"""Benchmark: full-resolution colorization throughput, batched vs one image at a time.

Baseline: `colorize_paths(batch_size=1)`; candidate: the default batch size. Both use a
freshly initialised `unet_256` at 256 px (cost does not depend on training) on the fixture
photos, on the CPU unless a GPU is present. Each variant first runs one untimed warm-up
pass (model load, allocator, kernel selection), then ROUNDS timed rounds alternate the two,
the order swapped every round (baseline first in round 1, candidate first in round 2, ...)
so slow drift in the machine's load falls on both. Every timed pass rewrites all outputs
(`overwrite=True`). Last line: one JSON object with the per-round and median images/s of
each and `ratio` (median candidate images/s over median baseline images/s).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "fixtures" / "photos"
N_IMAGES = 24
ROUNDS = 5


def main() -> dict[str, object]:
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
        variants = {"baseline_batch_1": 1, "batched": DEFAULT_INFERENCE_BATCH}

        def images_per_s(label: str) -> float:
            started = time.perf_counter()
            report = colorize_paths([str(inputs)], out=str(Path(tmp) / label), model="bench",
                                    batch_size=variants[label], overwrite=True)
            seconds = time.perf_counter() - started
            # Every pass must do the work: nothing skipped as already written, nothing failed.
            assert len(report.written) == N_IMAGES and not report.skipped_existing, report
            return N_IMAGES / seconds

        for label in variants:
            print(f"warm-up {label}: {images_per_s(label):.2f} images/s (untimed)",
                  file=sys.stderr)
        rounds: dict[str, list[float]] = {label: [] for label in variants}
        for index in range(ROUNDS):
            order = list(variants) if index % 2 == 0 else list(reversed(variants))
            for label in order:
                rounds[label].append(round(images_per_s(label), 3))
                print(f"round {index + 1}/{ROUNDS} {label}: batch {variants[label]}, "
                      f"{rounds[label][-1]:.2f} images/s", file=sys.stderr)

        figures: dict[str, object] = {"images": N_IMAGES, "rounds": ROUNDS,
                                      "batch_size": DEFAULT_INFERENCE_BATCH}
        medians = {}
        for label in variants:
            medians[label] = statistics.median(rounds[label])
            figures[f"{label}_images_per_s_rounds"] = rounds[label]
            figures[f"{label}_images_per_s"] = round(medians[label], 3)
        figures["ratio"] = round(medians["batched"] / medians["baseline_batch_1"], 3)
    return figures


if __name__ == "__main__":
    print(json.dumps(main()))

"""`make demo`: retrain a small model on the fixture photos, then colorize grayscale copies.

Runs offline on the CPU in a few minutes under Prefect's temporary local API, and prints
where the outputs, the model card, the metrics and the FiftyOne review dataset are, and the
model's evaluation beside its pretrain parent and the grayscale baseline.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from colorization import color, paths, storage, versions
from colorization.constants import CARD_NAME, DEFAULT_DEVICE, OUTPUT_JPEG_QUALITY
from colorization.evaluate import format_table
from colorization.inference import colorize_paths
from colorization.shards import read_manifest

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "photos"
# Small enough for a CPU in minutes: 64 px crops, a 6-level U-Net 32 channels wide.
DEMO_SETTINGS: dict[str, Any] = {
    "image_size": 64,
    "generator": "unet",
    "generator_options": {"num_downs": 6, "base_channels": 32},
    "pretrain_epochs": 6,
    "gan_epochs": 4,
    "batch_size": 8,
}


def make_grayscale_copies(dataset: str, source: str, out: str) -> str:
    """Grayscale copies of the validation photos, the kind of input users colorize."""
    for key in read_manifest(dataset)["splits"]["val"]["ids"]:
        img = color.load_image(storage.read_bytes(storage.join(source, key)), name=key)
        storage.write_bytes(storage.join(out, key), color.encode_image(
            img.convert("L"), suffix=Path(key).suffix, quality=OUTPUT_JPEG_QUALITY))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", default=str(FIXTURES), help="folder of colour photos")
    args = parser.parse_args(argv)
    # The colorizing step runs outside any flow run; keep its logs local and quiet about it.
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from flows.retrain import retrain  # imported late: Prefect reads the settings above

    started = time.monotonic()
    summary = retrain(source=args.source, device=DEFAULT_DEVICE, **DEMO_SETTINGS)
    demo_dir = storage.join(paths.home(), "demo")
    gray = make_grayscale_copies(summary["dataset"], args.source,
                                 storage.join(demo_dir, "grayscale"))
    report = colorize_paths([gray], out=storage.join(demo_dir, "colorized"),
                            model=summary["model_id"], overwrite=True)
    model_url = versions.resolve(summary["model_id"])
    print("\n=== colorization demo finished in %.0f s ===" % (time.monotonic() - started))
    print(f"dataset snapshot : {summary['dataset']}")
    print(f"model version    : {model_url}  (promoted: {summary['promoted']})")
    print(f"model card       : {storage.join(model_url, CARD_NAME)}")
    print(f"metrics (val)    : {json.dumps(summary['metrics'])}")
    print(f"review dataset   : {summary['review']}  (colorize review {summary['model_id']})")
    print(f"grayscale inputs : {gray}")
    print(f"colorized outputs: {storage.join(demo_dir, 'colorized')} "
          f"({len(report.written)} images, {len(report.failed)} failed)")
    print(f"champion         : {versions.champion()}")
    print("\n" + format_table(versions.read_card(summary["model_id"])["evaluation"]))
    return summary


if __name__ == "__main__":
    main()

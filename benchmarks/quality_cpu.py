"""Benchmark: the CPU training recipe, end to end, against the grayscale baseline.

Prepares ../shared/data (the repository's sibling folder of 1,337 colour photos) at 128 px,
trains `pretrain` then `gan` within a training-time budget (30 minutes by default; each
stage's epoch count follows from the time of its first epoch), evaluates both models on the
validation split with `colorization.evaluate`, leaves both registered under
COLORIZATION_HOME and promotes the GAN model.

Baseline: the grayscale photo itself (ab = 0). Figures per model: mean CIEDE2000 to the
original (on the displayed sRGB images, as `colorize evaluate` reports it), PSNR, and
colourfulness against the ground truth's. The recipe passes when CIEDE2000 is below the
baseline's, PSNR is within 0.5 dB of the baseline's or above, and colourfulness is at least
half the ground truth's. Last line: one JSON object; `ratio` = baseline CIEDE2000 / GAN
model's (above 1: closer to the true colours than gray).

    python benchmarks/quality_cpu.py                 # the full recipe (about 35 minutes)
    python benchmarks/quality_cpu.py --minutes 6 --sample-size 400   # a shortened run
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from colorization import versions  # noqa: E402
from colorization.constants import GRID_NAME  # noqa: E402
from colorization.evaluate import EvalConfig, evaluate_model  # noqa: E402
from colorization.models import ModelSpec  # noqa: E402
from colorization.shards import PrepareConfig, prepare_dataset, read_manifest  # noqa: E402
from colorization.train import TrainConfig, train_stage  # noqa: E402

PSNR_TOLERANCE_DB = 0.5
MIN_COLOURFULNESS_SHARE = 0.5
EPOCH_TIME_MARGIN = 1.08


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=str(ROOT.parent / "shared" / "data"),
                        help="folder of colour photos")
    parser.add_argument("--image-size", type=int, default=128, help="crop side in pixels")
    parser.add_argument("--sample-size", type=int, default=10_000,
                        help="photos to use (all 1,337 by default; fewer for a quick look)")
    parser.add_argument("--generator", default="resnet18_unet", help="registered generator")
    parser.add_argument("--options", type=json.loads, default={"weights": "none"},
                        help="generator options (JSON); ImageNet weights cannot be fetched "
                        "offline, so the encoder starts random ('{\"weights\": \"imagenet\"}' "
                        "on a connected machine)")
    parser.add_argument("--batch-size", type=int, default=16, help="photos per step")
    parser.add_argument("--minutes", type=float, default=30.0,
                        help="training-time budget of both stages together")
    parser.add_argument("--pretrain-share", type=float, default=0.3,
                        help="share of the budget for the L1 stage")
    parser.add_argument("--gan-mode", default="lsgan", help="vanilla or lsgan")
    parser.add_argument("--gan-lr", type=float, default=2e-4,
                        help="learning rate of the GAN stage (pix2pix's)")
    parser.add_argument("--gan-decay-share", type=float, default=0.5,
                        help="share of the GAN epochs over which the rate decays linearly "
                        "(pix2pix: 100 constant + 100 decaying)")
    parser.add_argument("--pretrain-decay-share", type=float, default=0.5,
                        help="the same for the L1 stage")
    parser.add_argument("--ema-decay", type=float, default=0.995,
                        help="both stages save an exponential moving average of the "
                        "generator's weights (0: off, the networks' own last weights)")
    return parser.parse_args(argv)


def train_within(config: TrainConfig, *, dataset: str, seconds: float,
                 init_from: str | None, decay_share: float = 0.0) -> dict[str, Any]:
    """Train one epoch, then continue the same run to as many epochs as `seconds` allows.

    The first epoch's own time sets the count (a probe on random tensors misjudged the GAN
    step by 1.6x): a finished run continues when called again with more epochs, so this
    costs one extra registered version (the one-epoch model) and no extra training. The
    last `decay_share` of the epochs decay the rate linearly (pix2pix's schedule).
    """
    first = train_stage(replace(config, epochs=1), dataset=dataset, init_from=init_from)
    # Later epochs ran up to 10% slower than the first (a 30-minute run took 1,846 s).
    epochs = max(1, math.floor(seconds / max(first["seconds"] * EPOCH_TIME_MARGIN, 1e-9)))
    print(f"{config.stage}: first epoch {first['seconds']:.1f} s -> {epochs} epochs",
          file=sys.stderr)
    if epochs == 1:
        return first
    decay = min(epochs - 1, round(decay_share * epochs))  # the first epoch ran at full rate
    return train_stage(replace(config, epochs=epochs, lr_decay_epochs=decay), dataset=dataset,
                       init_from=init_from)


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    figures: dict[str, Any] = {"loadavg_start": loadavg(), "generator": args.generator,
                               "image_size": args.image_size, "batch_size": args.batch_size,
                               "budget_minutes": args.minutes, "ema_decay": args.ema_decay,
                               "sample_size": args.sample_size}
    dataset = prepare_dataset(PrepareConfig(source=args.source, image_size=args.image_size,
                                            sample_size=args.sample_size))
    figures["train_images"] = read_manifest(dataset)["splits"]["train"]["count"]
    spec = ModelSpec(args.generator, args.options)
    budget = args.minutes * 60
    common = dict(generator=spec, batch_size=args.batch_size, seed=0,
                  ema_decay=args.ema_decay)
    pre = train_within(TrainConfig(stage="pretrain", **common), dataset=dataset,
                       seconds=budget * args.pretrain_share, init_from=None,
                       decay_share=args.pretrain_decay_share)
    gan = train_within(TrainConfig(stage="gan", gan_mode=args.gan_mode, lr=args.gan_lr,
                                   **common),
                       dataset=dataset, seconds=budget - pre["seconds"],
                       init_from=pre["model_id"], decay_share=args.gan_decay_share)
    versions.promote(gan["model_id"], reason="benchmarks/quality_cpu.py: the GAN recipe")
    figures["training_seconds"] = round(pre["seconds"] + gan["seconds"], 1)
    for name, result in (("pretrain", pre), ("gan", gan)):
        record = evaluate_model(result["model_id"], dataset=dataset,
                                config=EvalConfig(device="auto"))
        metrics = record["metrics"]
        figures["ciede2000_grayscale"] = record["summary"]["grayscale"]["ciede2000"]["mean"]
        figures[name] = {"model_id": result["model_id"], "epochs": result["epochs"],
                         "seconds": result["seconds"],
                         **{k: metrics[k] for k in ("ciede2000", "psnr", "psnr_grayscale",
                                                    "colorfulness",
                                                    "colorfulness_ground_truth")}}
        if name == "gan":
            figures["gan"]["grid"] = str(Path(versions.resolve(result["model_id"]))
                                         / GRID_NAME)
    gan_figures = figures["gan"]
    figures["passes"] = {
        "ciede2000_below_grayscale": gan_figures["ciede2000"] < figures["ciede2000_grayscale"],
        "psnr_within_0.5_db": gan_figures["psnr"] >= gan_figures["psnr_grayscale"]
        - PSNR_TOLERANCE_DB,
        "colourfulness_half_of_truth": gan_figures["colorfulness"]
        >= MIN_COLOURFULNESS_SHARE * gan_figures["colorfulness_ground_truth"]}
    figures["loadavg_end"] = loadavg()
    figures["ratio"] = round(figures["ciede2000_grayscale"] / gan_figures["ciede2000"], 3)
    return figures


if __name__ == "__main__":
    print(json.dumps(main()))

"""Benchmark: the CPU training recipe, end to end, against the grayscale baseline.

Prepares ../shared/data (the repository's sibling folder of 1,337 colour photos) at 128 px,
trains `pretrain` then `gan` within a training-time budget (30 minutes by default; epochs
follow from a short speed probe), evaluates both models on the validation split, leaves
both registered under COLORIZATION_HOME and promotes the GAN model.

Baseline: the grayscale photo itself (ab = 0). Figures per model: mean CIEDE2000 to the
original (skimage.color.deltaE_ciede2000, on the displayed sRGB images), PSNR, and
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
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.color import deltaE_ciede2000, rgb2lab

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from colorization import color, versions  # noqa: E402
from colorization.constants import GRID_NAME  # noqa: E402
from colorization.data import LoaderConfig, make_loader  # noqa: E402
from colorization.devices import select_device, select_training_precision  # noqa: E402
from colorization.distributed import DistContext  # noqa: E402
from colorization.evaluate import EvalConfig, evaluate_model  # noqa: E402
from colorization.models import ModelSpec  # noqa: E402
from colorization.shards import PrepareConfig, prepare_dataset, read_manifest  # noqa: E402
from colorization.train import TrainConfig, train_stage  # noqa: E402
from colorization.trainer import Trainer  # noqa: E402

PSNR_TOLERANCE_DB = 0.5
MIN_COLOURFULNESS_SHARE = 0.5


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default=str(ROOT.parent / "shared" / "data"),
                        help="folder of colour photos")
    parser.add_argument("--image-size", type=int, default=128, help="crop side in pixels")
    parser.add_argument("--sample-size", type=int, default=10_000,
                        help="photos to use (all 1,337 by default; fewer for a quick look)")
    parser.add_argument("--generator", default="unet_128", help="registered generator")
    parser.add_argument("--options", type=json.loads, default={}, help="generator options")
    parser.add_argument("--batch-size", type=int, default=16, help="photos per step")
    parser.add_argument("--minutes", type=float, default=30.0,
                        help="training-time budget of both stages together")
    parser.add_argument("--pretrain-share", type=float, default=0.5,
                        help="share of the budget for the L1 stage")
    parser.add_argument("--gan-mode", default="lsgan", help="vanilla or lsgan")
    parser.add_argument("--gan-lr", type=float, default=1e-4,
                        help="learning rate of the GAN stage (pix2pix's 2e-4 from scratch)")
    return parser.parse_args(argv)


def probe_images_per_second(spec: ModelSpec, size: int, batch: int,
                            adversarial: bool) -> float:
    """Median-free quick probe: one warm-up step, then two timed steps."""
    device = select_device("auto")
    trainer = Trainer(stage_adversarial=adversarial, generator_spec=spec,
                      discriminator_spec=ModelSpec("patchgan_70"), init_from=None,
                      models_root=None, lr=1e-4, betas=(0.5, 0.999), l1_weight=100.0,
                      gan_mode="vanilla", seed=0, image_size=size, device=device,
                      precision=select_training_precision("auto", device=device),
                      ctx=DistContext())
    l_norm, ab = torch.rand(batch, 1, size, size) * 2 - 1, torch.rand(batch, 2, size, size)
    trainer.step(l_norm, ab)
    started = time.perf_counter()
    for _ in range(2):
        trainer.step(l_norm, ab)
    return 2 * batch / (time.perf_counter() - started)


@torch.no_grad()
def ciede2000(model: str | None, dataset: str) -> float:
    """Mean CIEDE2000 between originals and the model's colours (None: gray) on val."""
    generator = versions.load_generator(model)[0] if model else None
    loader = make_loader(dataset, "val", LoaderConfig(batch_size=32, shuffle=False,
                                                      augment=False))
    total, count = 0.0, 0
    for l_norm, ab in loader:
        pred = generator(l_norm).float() if generator is not None else torch.zeros_like(ab)
        truth = color.model_output_to_rgb(l_norm, ab).permute(0, 2, 3, 1).numpy()
        shown = color.model_output_to_rgb(l_norm, pred).permute(0, 2, 3, 1).numpy()
        delta = deltaE_ciede2000(rgb2lab(truth), rgb2lab(shown))  # [B, S, S]
        total += float(np.mean(delta, axis=(1, 2)).sum())
        count += l_norm.shape[0]
    return total / count


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    figures: dict[str, Any] = {"loadavg_start": loadavg(), "generator": args.generator,
                               "image_size": args.image_size, "batch_size": args.batch_size,
                               "budget_minutes": args.minutes,
                               "sample_size": args.sample_size}
    dataset = prepare_dataset(PrepareConfig(source=args.source, image_size=args.image_size,
                                            sample_size=args.sample_size))
    n_train = read_manifest(dataset)["splits"]["train"]["count"]
    spec = ModelSpec(args.generator, args.options)
    budget = args.minutes * 60
    epochs = {}
    for stage, share, adversarial in (("pretrain", args.pretrain_share, False),
                                      ("gan", 1 - args.pretrain_share, True)):
        speed = probe_images_per_second(spec, args.image_size, args.batch_size, adversarial)
        epochs[stage] = max(1, math.floor(budget * share * speed / n_train))
        print(f"{stage}: probe {speed:.1f} images/s -> {epochs[stage]} epochs",
              file=sys.stderr)
    common = dict(generator=spec, batch_size=args.batch_size, seed=0)
    pre = train_stage(TrainConfig(stage="pretrain", epochs=epochs["pretrain"], **common),
                      dataset=dataset)
    gan = train_stage(TrainConfig(stage="gan", epochs=epochs["gan"], gan_mode=args.gan_mode,
                                  lr=args.gan_lr, **common),
                      dataset=dataset, init_from=pre["model_id"])
    versions.promote(gan["model_id"], reason="benchmarks/quality_cpu.py: the GAN recipe")
    figures["training_seconds"] = round(pre["seconds"] + gan["seconds"], 1)
    figures["ciede2000_grayscale"] = round(ciede2000(None, dataset), 3)
    for name, result in (("pretrain", pre), ("gan", gan)):
        metrics = evaluate_model(result["model_id"], dataset=dataset,
                                 config=EvalConfig(device="auto"))
        figures[name] = {"model_id": result["model_id"], "epochs": result["epochs"],
                         "seconds": result["seconds"],
                         "ciede2000": round(ciede2000(result["model_id"], dataset), 3),
                         **{k: metrics[k] for k in ("psnr", "psnr_grayscale", "colorfulness",
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

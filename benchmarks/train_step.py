"""Benchmark: training-step throughput of the default precision and layout vs fp32 NCHW.

Baseline: fp32, NCHW (torch's default contiguous layout). Candidate: what training picks
by default on this machine (`select_training_precision("auto")`: bf16 autocast + channels_last
on CPUs with AVX512-BF16/AMX and on Ampere+ GPUs). Both run pix2pix's `unet_256` +
`patchgan_70` at 256 px, batch 16, on the same random batch: the GAN step (D and G updates)
and the L1 step (pretrain), interleaved rounds, median of the timed steps. GFLOP/s = FLOPs of
one step (torch's FlopCounterMode: conv/matmul, forward + backward) / seconds.

Then a short loss-curve check: the L1 stage for 24 steps on the fixture photos at 64 px,
once per precision, from the same initial weights and batches; `curve_max_rel_diff` is the
largest relative gap between the two curves (smoothed over 4 steps).

Last line: one JSON object; `ratio` = candidate / baseline images/s of the GAN step.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from colorization import color  # noqa: E402
from colorization.devices import (  # noqa: E402
    PRECISIONS,
    select_device,
    select_training_precision,
)
from colorization.distributed import DistContext  # noqa: E402
from colorization.models import ModelSpec, generator_for_size  # noqa: E402
from colorization.trainer import Trainer  # noqa: E402

SIZE, BATCH = 256, 16
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))  # timed steps per setting (after 1 warm-up)
CURVE_SIZE, CURVE_BATCH, CURVE_STEPS = 64, 8, 24


def make_trainer(adversarial: bool, precision_name: str, device: torch.device,
                 size: int = SIZE, generator: ModelSpec | None = None) -> Trainer:
    return Trainer(stage_adversarial=adversarial,
                   generator_spec=generator or generator_for_size(size),
                   discriminator_spec=ModelSpec("patchgan_70"), init_from=None,
                   models_root=None, lr=2e-4, betas=(0.5, 0.999), l1_weight=100.0,
                   gan_mode="vanilla", seed=0, image_size=size, device=device,
                   precision=PRECISIONS[precision_name], ctx=DistContext())


def step_flops(trainer: Trainer, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        trainer.step(*batch)
    return counter.get_total_flops()


def throughput(device: torch.device, candidate: str) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    batch = (torch.rand(BATCH, 1, SIZE, SIZE, generator=gen) * 2 - 1,
             torch.rand(BATCH, 2, SIZE, SIZE, generator=gen) * 2 - 1)
    batch = (batch[0].to(device), batch[1].to(device))
    figures: dict[str, float] = {}
    for kind, adversarial in (("gan", True), ("l1", False)):
        trainers = {"baseline": make_trainer(adversarial, "fp32", device)}
        if candidate != "fp32":  # else the default is the baseline: one measurement
            trainers["default"] = make_trainer(adversarial, candidate, device)
        flops = step_flops(trainers["baseline"], batch)  # also the warm-up step
        if "default" in trainers:
            step_flops(trainers["default"], batch)
        times: dict[str, list[float]] = {name: [] for name in trainers}
        for _ in range(ROUNDS):  # interleaved, so a noisy neighbour hits both alike
            for name, trainer in trainers.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                trainer.step(*batch)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[name].append(time.perf_counter() - started)
        for name, values in times.items():
            seconds = statistics.median(values)
            figures[f"{kind}_{name}_images_per_s"] = round(BATCH / seconds, 3)
            figures[f"{kind}_{name}_gflops_per_s"] = round(flops / seconds / 1e9, 1)
            print(f"{kind} step, {name}: {BATCH / seconds:.2f} images/s, "
                  f"{flops / seconds / 1e9:.1f} GFLOP/s", file=sys.stderr)
        for unit in ("images_per_s", "gflops_per_s"):
            figures.setdefault(f"{kind}_default_{unit}", figures[f"{kind}_baseline_{unit}"])
        figures[f"{kind}_gflop_per_step"] = round(flops / 1e9, 1)
    return figures


def curve_gap(device: torch.device, candidate: str) -> float:
    """Largest relative gap between the fp32 and `candidate` L1 curves (4-step means)."""
    photos = sorted((ROOT / "tests" / "fixtures" / "photos").glob("*.jpg"))
    images = []
    for path in photos:
        img = color.load_image(path.read_bytes(), name=path.name).convert("RGB")
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((CURVE_SIZE, CURVE_SIZE))
        images.append(color.image_to_tensor(img))
    l_norm, ab = color.rgb_to_model_input(torch.stack(images))  # [N, 1, S, S], [N, 2, S, S]
    curves = {}
    for name in ("fp32", candidate):
        torch.manual_seed(0)
        trainer = make_trainer(False, name, device, CURVE_SIZE)
        losses = []
        for step in range(CURVE_STEPS):
            index = torch.arange(step * CURVE_BATCH, (step + 1) * CURVE_BATCH) % len(images)
            out = trainer.step(l_norm[index].to(device), ab[index].to(device))
            losses.append(float(out["G_L1"].item()))
        curves[name] = torch.tensor(losses).reshape(-1, 4).mean(dim=1)
    print(f"L1 curves (4-step means): fp32 {curves['fp32'].numpy().round(4)}, "
          f"{candidate} {curves[candidate].numpy().round(4)}", file=sys.stderr)
    return float(((curves[candidate] - curves["fp32"]).abs() / curves["fp32"]).max())


def main() -> dict[str, float | str]:
    device = select_device("auto")
    candidate = select_training_precision("auto", device=device).name
    figures: dict[str, float | str] = {"device": str(device), "default_precision": candidate,
                                       "size": SIZE, "batch": BATCH}
    load = Path("/proc/loadavg")
    if load.exists():
        figures["loadavg_1min_before"] = float(load.read_text().split()[0])
    figures.update(throughput(device, candidate))
    if candidate != "fp32":
        figures["curve_max_rel_diff"] = round(curve_gap(device, candidate), 4)
    figures["ratio"] = round(float(figures["gan_default_images_per_s"])
                             / float(figures["gan_baseline_images_per_s"]), 3)
    return figures


if __name__ == "__main__":
    print(json.dumps(main()))

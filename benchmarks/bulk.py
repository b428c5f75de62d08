"""Benchmark: `colorize bucket` end to end against the model's own rate and a naive baseline.

On real photos from ../shared/data (200 by default; 1,000 more for the memory check), with
the default generator `unet_256` at its 256-px render size:

(a) forward_ips: the generator's batched forward rate (batch 8) in the default inference
    precision (bf16 + channels_last on CPUs with native bf16 and on GPUs, else fp32);
(b) bulk_ips: `colorize bucket IN OUT` end to end (listing, manifest, decode, model,
    full-resolution recombination, encode, atomic writes), run as the CLI in a child
    process, timed from the command's start: Python imports (torch, ~2 s) and model
    loading included, as a user waits for them (`bulk_ips_after_imports` leaves the
    imports out); peak RSS of that process for 200 and for 1,000 photos;
(c) baseline_ips: a straightforward per-image fp32 path: load, resize to 256, predict,
    scikit-image lab2rgb, save.

Also the colour difference between the default precision and fp32 (mean CIEDE2000 of
full-resolution outputs) and the fp32 forward rate, which decide the inference default.
The generator has random weights whose BatchNorm statistics are calibrated on real photos
(no trained unet_256 is available offline): cost does not depend on training, and the
calibration gives it a trained network's activation ranges. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.color import deltaE_ciede2000, lab2rgb, rgb2lab

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's package, even beside an installed one
DATA = ROOT.parent / "shared" / "data"
RENDER = 256
FORWARD_BATCH, FORWARD_BATCHES = 8, 6
CALIBRATION_PHOTOS = 64
DELTA_E_PHOTOS = 16
MEMORY_PHOTOS = 1_000

_CHILD = """
import json, resource, sys, time
started = time.perf_counter()
from colorization.cli import main
imported = time.perf_counter()
code = main(sys.argv[1:])
print(json.dumps({"code": code, "seconds": time.perf_counter() - started,
                  "seconds_after_imports": time.perf_counter() - imported,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def real_photos(count: int) -> list[Path]:
    photos = sorted(p for p in DATA.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    if len(photos) < count:
        raise SystemExit(f"{DATA}: {len(photos)} photos, {count} needed")
    return photos[:: max(1, len(photos) // count)][:count]  # spread over the three sets


def link_inputs(photos: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True)
    for index, photo in enumerate(photos):
        (folder / f"{index:05d} {photo.name}").write_bytes(photo.read_bytes())


def make_model(photos: list[Path]) -> None:
    """unet_256 with random weights, BatchNorm statistics calibrated on real photos."""
    from colorization import versions
    from colorization.color import image_to_tensor, normalize_l, rgb_to_lab
    from colorization.models import DEFAULT_GENERATOR, ModelSpec, build_generator

    spec = ModelSpec(DEFAULT_GENERATOR)
    generator = build_generator(spec, seed=0)
    for module in generator.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batches
    generator.train()
    with torch.no_grad():
        for start in range(0, min(CALIBRATION_PHOTOS, len(photos)), FORWARD_BATCH):
            batch = []
            for path in photos[start:start + FORWARD_BATCH]:
                with Image.open(path) as img:
                    batch.append(image_to_tensor(img.convert("RGB").resize((RENDER, RENDER))))
            generator(normalize_l(rgb_to_lab(torch.stack(batch))[:, :1]))
    versions.save_version(generator.eval(), {"stage": "bench", "generator": spec.to_dict(),
                                             "image_size": RENDER}, model_id="bench")


def forward_rate(precision: str, photos: list[Path]) -> float:
    from colorization import imagefiles
    from colorization.inference import Colorizer

    colorizer = Colorizer.load("bench", device="auto", precision=precision)
    prepared = []
    for path in photos[:FORWARD_BATCH]:
        picture = imagefiles.decode(path.read_bytes(), name=path.name, max_pixels=10**8)
        prepared.append(colorizer.prepare(picture))
    colorizer.predict(prepared)  # warm-up
    started = time.perf_counter()
    for _ in range(FORWARD_BATCHES):
        colorizer.predict(prepared)
    return FORWARD_BATCH * FORWARD_BATCHES / (time.perf_counter() - started)


def mean_delta_e(photos: list[Path], model: str = "bench") -> float:
    """Mean CIEDE2000 between default-precision and fp32 full-resolution outputs."""
    from colorization.inference import Colorizer

    images = []
    for path in photos[:DELTA_E_PHOTOS]:
        with Image.open(path) as img:
            images.append(img.convert("L"))
    default = Colorizer.load(model, device="auto").colorize(images)
    fp32 = Colorizer.load(model, device="auto", precision="fp32").colorize(images)
    lab = [(rgb2lab(np.asarray(a) / 255), rgb2lab(np.asarray(b) / 255))
           for a, b in zip(default, fp32, strict=True)]
    chroma = np.mean([np.hypot(b[..., 1], b[..., 2]).mean() for _, b in lab])
    print(f"mean chroma of the fp32 outputs: {chroma:.1f}", file=sys.stderr)
    return float(np.mean([deltaE_ciede2000(a, b).mean() for a, b in lab]))


def bulk_run(source: Path, out: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _CHILD, "bucket", str(source), str(out),
                           "--model", "bench"], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"colorize bucket failed:\n{done.stdout}\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(done.stdout.strip().splitlines()[-2], file=sys.stderr)  # the CLI's summary
    return result


def baseline_rate(photos: list[Path], out: Path) -> float:
    """Per image, fp32: load, resize to 256, predict, scikit-image lab2rgb, save."""
    from colorization.versions import load_generator

    generator, _ = load_generator("bench")
    out.mkdir()
    started = time.perf_counter()
    with torch.no_grad():
        for path in photos:
            with Image.open(path) as img:
                rgb = np.asarray(img.convert("RGB").resize((RENDER, RENDER)), float) / 255
            lightness = rgb2lab(rgb)[..., 0]
            l_norm = torch.from_numpy(lightness / 50 - 1).float()[None, None]
            ab = generator(l_norm)[0].numpy().transpose(1, 2, 0) * 110
            lab = np.concatenate([lightness[..., None], ab], axis=-1)
            Image.fromarray((lab2rgb(lab) * 255).round().astype(np.uint8)).save(
                out / path.name, quality=95)
    return len(photos) / (time.perf_counter() - started)


def main() -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200, help="photos for (a)-(c)")
    parser.add_argument("--memory-photos", type=int, default=MEMORY_PHOTOS,
                        help="photos of the second bulk run (peak RSS)")
    parser.add_argument("--trained-model", help="URL of a trained model version: also "
                        "report its bf16-vs-fp32 colour difference (e.g. the demo's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        os.environ["COLORIZATION_HOME"] = tmp
        from colorization.devices import select_device, select_inference_policy

        photos = real_photos(max(args.photos, args.memory_photos))
        small = photos[:: max(1, len(photos) // args.photos)][: args.photos]
        make_model(small)
        policy = select_inference_policy(device=select_device("auto"))
        figures: dict[str, float | str] = {"photos": args.photos, "render_size": RENDER,
                                           "generator": "unet_256",
                                           "precision": policy.precision.name,
                                           "channels_last": str(policy.channels_last)}
        figures["forward_ips"] = round(forward_rate("auto", small), 2)
        figures["forward_fp32_ips"] = round(forward_rate("fp32", small), 2)
        figures["mean_ciede2000_vs_fp32"] = round(mean_delta_e(small), 4)
        if args.trained_model:
            figures["mean_ciede2000_vs_fp32_trained"] = round(
                mean_delta_e(small, args.trained_model), 4)
        link_inputs(small, Path(tmp) / "in")
        bulk = bulk_run(Path(tmp) / "in", Path(tmp) / "out")
        figures["bulk_ips"] = round(args.photos / bulk["seconds"], 2)
        figures["bulk_ips_after_imports"] = round(args.photos / bulk["seconds_after_imports"],
                                                  2)
        figures["peak_rss_mb_200"] = round(bulk["peak_rss_mb"], 1)
        figures["baseline_ips"] = round(baseline_rate(small, Path(tmp) / "baseline"), 2)
        link_inputs(photos[: args.memory_photos], Path(tmp) / "in_big")
        big = bulk_run(Path(tmp) / "in_big", Path(tmp) / "out_big")
        figures["bulk_ips_1000"] = round(args.memory_photos / big["seconds"], 2)
        figures["peak_rss_mb_1000"] = round(big["peak_rss_mb"], 1)
        figures["ratio"] = round(figures["bulk_ips"] / figures["baseline_ips"], 3)
        figures["ratio_to_forward"] = round(figures["bulk_ips"] / figures["forward_ips"], 3)
        with open("/proc/loadavg") as fh:
            figures["loadavg"] = fh.read().split()[0]
    return figures  # type: ignore[return-value]


if __name__ == "__main__":
    print(json.dumps(main()))

"""Benchmark: the ONNX export of the default generator against torch, on real photos.

`unet_256` (random seeded weights: no trained one is available offline; cost does not depend
on training) is saved as a model version and exported with `colorize models export`'s
library call. Then, on 256-px L of real photos from ../shared/data, in interleaved rounds:

(a) baseline_ips: torch fp32 eager forward, batch 8 (the CPU's fp32 reference path);
(b) onnxruntime_ips: the exported file in onnxruntime's CPU provider, same batches.

Also the export time, the file size and the largest |ab| difference between the two.
Last line: one JSON object, `ratio` = onnxruntime_ips / baseline_ips.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's package, even beside an installed one
DATA = ROOT.parent / "shared" / "data"
SIZE, BATCH, BATCHES, ROUNDS = 256, 8, 3, 3


def photo_batches() -> list[torch.Tensor]:
    from colorization import color

    photos = sorted(p for p in DATA.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    needed = BATCH * BATCHES
    if len(photos) < needed:
        raise SystemExit(f"{DATA}: {len(photos)} photos, {needed} needed")
    l_norms = []
    for path in photos[:needed]:
        image = color.load_image(path.read_bytes(), name=str(path)).resize((SIZE, SIZE))
        l_norms.append(color.rgb_to_model_input(color.image_to_tensor(image)[None])[0])
    return [torch.cat(l_norms[i:i + BATCH]) for i in range(0, needed, BATCH)]


def main() -> None:
    import onnxruntime

    with tempfile.TemporaryDirectory() as home:
        os.environ["COLORIZATION_HOME"] = home
        from colorization import versions
        from colorization.export import export_model
        from colorization.models import ModelSpec, build_generator

        spec = ModelSpec("unet_256")
        model_id = versions.new_model_id("bench")
        versions.save_version(build_generator(spec, seed=0), {
            "stage": "pretrain", "generator": spec.to_dict(), "image_size": SIZE},
            model_id=model_id)
        started = time.perf_counter()
        url = export_model(model_id, export_format="onnx")
        export_seconds = time.perf_counter() - started
        onnx_mb = Path(url).stat().st_size / 2**20
        session = onnxruntime.InferenceSession(url, providers=["CPUExecutionProvider"])
        generator, _ = versions.load_generator(model_id)
        batches = photo_batches()
        timings = {"torch": 0.0, "onnxruntime": 0.0}
        max_diff = 0.0
        with torch.inference_mode():
            generator(batches[0])  # warm-up both
            session.run(["ab"], {"l": batches[0].numpy()})
            for _ in range(ROUNDS):  # interleaved: a neighbour's load hits both alike
                for batch in batches:
                    started = time.perf_counter()
                    expected = generator(batch).numpy()
                    timings["torch"] += time.perf_counter() - started
                    started = time.perf_counter()
                    (got,) = session.run(["ab"], {"l": batch.numpy()})
                    timings["onnxruntime"] += time.perf_counter() - started
                    max_diff = max(max_diff, float(np.abs(got - expected).max()))
    images = ROUNDS * BATCHES * BATCH
    baseline, ours = images / timings["torch"], images / timings["onnxruntime"]
    print(f"unet_256 at {SIZE} px, batch {BATCH}: torch fp32 {baseline:.1f} img/s, "
          f"onnxruntime {ours:.1f} img/s; export {export_seconds:.1f} s, {onnx_mb:.0f} MB",
          file=sys.stderr)
    print(json.dumps({"benchmark": "export_onnx", "generator": "unet_256", "size": SIZE,
                      "batch": BATCH, "images": images,
                      "export_seconds": round(export_seconds, 1), "onnx_mb": round(onnx_mb, 1),
                      "baseline_ips": round(baseline, 2), "onnxruntime_ips": round(ours, 2),
                      "max_abs_diff": max_diff, "ratio": round(ours / baseline, 3)}))


if __name__ == "__main__":
    main()

"""Benchmark: dataset preparation throughput at 256 px, against a naive path.

Baseline (naive, one process): per photo, PIL full decode, resize the short side to 256
(bicubic) and crop the centre, scikit-image `rgb2lab`, float16 array (the old storage).
Candidate: `prepare_dataset` on a folder of the same photos, everything included (hash
order, libjpeg-turbo decoding (draft mode for large photos), OpenCV Lab, filters and the
`lab.zst` encoding in worker processes, shard tars, manifest). Photos: the real ones of
../shared/data (COCO 640x480 and ImageNet ~500x375), or the 256-px test fixtures (at
128 px) when that folder is absent. One untimed warm-up of both paths on a few photos
(imports, the worker pool, first-call allocations), then rounds alternate and each path's
median round counts; last line: one JSON object with `ratio` = candidate images/s over
baseline images/s and the 1-minute load average (other jobs on the machine slow both).
Beside them, CPU milliseconds per photo of each path (the candidate's worker processes
included), which other jobs disturb far less than wall time, and `ratio_two_free_cores`:
what the ratio would be with both cores free (naive CPU time over half the candidate's).
"""

from __future__ import annotations

import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
N_PHOTOS = 240
ROUNDS = 3
WARM_UP = 16  # photos


def _photos() -> tuple[list[Path], int]:
    if (SHARED / "coco128").is_dir():
        found = (sorted((SHARED / "coco128" / "train2017").glob("*.jpg"))
                 + sorted((SHARED / "imagenet_sample").glob("*.JPEG")))
        return found[:N_PHOTOS], 256
    return sorted((ROOT / "tests" / "fixtures" / "photos").glob("*.jpg")), 128


def naive(data: list[bytes], size: int) -> None:
    import numpy as np
    from PIL import Image
    from skimage.color import rgb2lab

    for raw in data:
        img = Image.open(io.BytesIO(raw)).convert("RGB")
        scale = size / min(img.size)
        width, height = max(size, round(img.width * scale)), max(size, round(img.height * scale))
        img = img.resize((width, height),
                         Image.Resampling.BICUBIC)
        left, top = (img.width - size) // 2, (img.height - size) // 2
        crop = np.asarray(img.crop((left, top, left + size, top + size)))
        buffer = io.BytesIO()
        np.save(buffer, rgb2lab(crop).astype(np.float16).transpose(2, 0, 1))


def _cpu_s() -> float:
    """CPU seconds of this process and its live children (the conversion pool)."""
    import psutil

    me = psutil.Process()
    times = [me.cpu_times()] + [child.cpu_times() for child in me.children(recursive=True)]
    return sum(t.user + t.system for t in times)


def main() -> dict[str, object]:
    photos, size = _photos()
    data = [p.read_bytes() for p in photos]
    with tempfile.TemporaryDirectory(prefix="bench-prep-") as tmp:
        os.environ["COLORIZATION_HOME"] = tmp
        from colorization.shards import PrepareConfig, prepare_dataset, read_manifest

        source = Path(tmp) / "photos"
        source.mkdir()
        for photo in photos:
            (source / photo.name).write_bytes(photo.read_bytes())
        naive(data[:WARM_UP], size)
        prepare_dataset(PrepareConfig(source=str(source), image_size=size, sample_size=WARM_UP,
                                      output=str(Path(tmp) / "warm-up")))
        base_s, cand_s, base_cpu, cand_cpu, manifest = [], [], [], [], {}
        for index in range(ROUNDS):
            started, cpu = time.perf_counter(), _cpu_s()
            naive(data, size)
            base_s.append(time.perf_counter() - started)
            base_cpu.append(_cpu_s() - cpu)
            started, cpu = time.perf_counter(), _cpu_s()
            out = prepare_dataset(PrepareConfig(source=str(source), image_size=size,
                                                sample_size=len(photos),
                                                output=str(Path(tmp) / f"snap{index}")))
            cand_s.append(time.perf_counter() - started)
            cand_cpu.append(_cpu_s() - cpu)
            manifest = read_manifest(out)
            print(f"round {index}: naive {len(photos) / base_s[-1]:.1f} images/s, prepare "
                  f"{len(photos) / cand_s[-1]:.1f} images/s", file=sys.stderr)
    baseline = len(photos) / statistics.median(base_s)
    candidate = len(photos) / statistics.median(cand_s)
    naive_ms = statistics.median(base_cpu) / len(photos) * 1000
    prepare_ms = statistics.median(cand_cpu) / len(photos) * 1000
    return {"photos": len(photos), "image_size": size, "workers": os.cpu_count(),
            "baseline_naive_images_per_s": round(baseline, 1),
            "prepare_images_per_s": round(candidate, 1),
            "kept": manifest["counts"]["kept"], "dropped": manifest["counts"]["dropped"],
            "bytes_per_sample": manifest["bytes"]["per_sample"],
            "naive_cpu_ms_per_photo": round(naive_ms, 2),
            "prepare_cpu_ms_per_photo": round(prepare_ms, 2),
            "ratio_two_free_cores": round(naive_ms / (prepare_ms / 2), 3),
            "loadavg_1min": round(os.getloadavg()[0], 2),
            "ratio": round(candidate / baseline, 3)}


if __name__ == "__main__":
    print(json.dumps(main()))

"""Benchmark: training batches from local shards, the new format (3, `lab.zst`) vs older.

All snapshots hold the same photos at 256 px: the new one written by `prepare_dataset`,
the older ones rebuilt from its samples in the same shard layout: format_version 2 (what
prepare wrote before: lossless WebP `lab.webp` of the same 8-bit codes, WebP method 1)
and format_version 1 (float16 `lab.npy`). Batches of 16 with shuffling and flips, through
`make_loader`, whole epochs including worker start-up, with 2 loader workers (the new
format also with 0, reported beside). Last line: one JSON object: `images_per_s` (new
format, 2 workers), bytes per sample of each format and `ratio` = new over format 2
images/s at 2 workers.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
N_PHOTOS = 640
EPOCHS = 2


def _photos() -> list[Path]:
    if (SHARED / "coco128").is_dir():
        return (sorted((SHARED / "coco128" / "train2017").glob("*.jpg"))
                + sorted((SHARED / "imagenet_sample").glob("*.JPEG")))[:N_PHOTOS]
    return sorted((ROOT / "tests" / "fixtures" / "photos").glob("*.jpg"))


def _old_format_copy(new: Path, old: Path, version: int) -> None:
    """The same samples as format_version 1 (float16 lab.npy) or 2 (WebP lab.webp)."""
    import numpy as np
    from PIL import Image

    from colorization.samples import decode_codes, dequantise

    manifest = json.loads((new / "manifest.json").read_text())
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            target = old / shard["name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            with tarfile.open(new / shard["name"]) as src, tarfile.open(target, "w") as dst:
                for member in src.getmembers():
                    payload = src.extractfile(member).read()  # type: ignore[union-attr]
                    if member.name.endswith(".lab.zst"):
                        codes = decode_codes(payload)  # [3, S, S]
                        buffer = io.BytesIO()
                        if version == 1:
                            np.save(buffer, dequantise(codes).astype(np.float16))
                        else:
                            Image.fromarray(codes.transpose(1, 2, 0), mode="RGB").save(
                                buffer, format="WEBP", lossless=True, quality=0, method=1)
                        payload = buffer.getvalue()
                        suffix = "npy" if version == 1 else "webp"
                        member = tarfile.TarInfo(member.name[: -len("zst")] + suffix)
                    member.size = len(payload)
                    dst.addfile(member, io.BytesIO(payload))
            shard["bytes"] = target.stat().st_size
    manifest["format_version"] = version
    (old / "manifest.json").write_text(json.dumps(manifest))


def _rate(dataset: str, workers: int) -> float:
    from colorization.data import LoaderConfig, make_loader

    images, started = 0, time.perf_counter()
    for epoch in range(EPOCHS):
        loader = make_loader(dataset, "train", LoaderConfig(batch_size=16, seed=epoch,
                                                            num_workers=workers))
        for l_norm, _ab in loader:
            images += l_norm.shape[0]
    return images / (time.perf_counter() - started)


def main() -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-reader-") as tmp:
        os.environ["COLORIZATION_HOME"] = tmp
        from colorization.shards import PrepareConfig, prepare_dataset, read_manifest

        source = Path(tmp) / "photos"
        source.mkdir()
        photos = _photos()
        for photo in photos:
            (source / photo.name).write_bytes(photo.read_bytes())
        size = 256 if (SHARED / "coco128").is_dir() else 128
        new = prepare_dataset(PrepareConfig(source=str(source), image_size=size,
                                            sample_size=len(photos), val_fraction=0.05,
                                            output=str(Path(tmp) / "new")))
        paths = {"format3": new}
        for version in (1, 2):
            paths[f"format{version}"] = str(Path(tmp) / f"format{version}")
            _old_format_copy(Path(new), Path(paths[f"format{version}"]), version)
        figures: dict[str, object] = {"image_size": size,
                                      "train_samples": read_manifest(new)["counts"]["train"]}
        for label, path in paths.items():
            shards = read_manifest(path)["splits"]["train"]["shards"]
            figures[f"bytes_per_sample_{label}"] = round(sum(s["bytes"] for s in shards)
                                                         / sum(s["count"] for s in shards))
        runs = [("format1", 2), ("format2", 2), ("format3", 0), ("format3", 2)]
        for label, workers in runs:
            rate = _rate(paths[label], workers)
            figures[f"{label}_workers{workers}_images_per_s"] = round(rate, 1)
            print(f"{label}, {workers} workers: {rate:.1f} images/s", file=sys.stderr)
        new_rate = float(figures["format3_workers2_images_per_s"])  # type: ignore[arg-type]
        old_rate = float(figures["format2_workers2_images_per_s"])  # type: ignore[arg-type]
        figures.update({"images_per_s": round(new_rate, 1),
                        "loadavg_1min": round(os.getloadavg()[0], 2),
                        "ratio": round(new_rate / old_rate, 3)})
    return figures


if __name__ == "__main__":
    print(json.dumps(main()))

"""Benchmark: training batches from local shards, new (format 2, lossless WebP) vs old.

Both snapshots hold the same photos at 256 px: the new one written by `prepare_dataset`,
the old one (format_version 1, float16 `lab.npy`, what prepare wrote before) rebuilt from
the same Lab. Batches of 16 with shuffling and flips, through `make_loader`, whole epochs
including worker start-up, with 2 loader workers (and 0, reported beside). Last line: one
JSON object: `images_per_s` (new format, 2 workers), bytes per sample of both formats and
`ratio` = new over old images/s at 2 workers.
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


def _old_format_copy(new: Path, old: Path) -> None:
    """The same samples as format_version 1 (float16 lab.npy), same shard layout."""
    import numpy as np

    from colorization.samples import decode_lab

    manifest = json.loads((new / "manifest.json").read_text())
    for split in manifest["splits"].values():
        for shard in split["shards"]:
            target = old / shard["name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            with tarfile.open(new / shard["name"]) as src, tarfile.open(target, "w") as dst:
                for member in src.getmembers():
                    payload = src.extractfile(member).read()  # type: ignore[union-attr]
                    if member.name.endswith(".lab.webp"):
                        buffer = io.BytesIO()
                        np.save(buffer, decode_lab(payload).astype(np.float16))
                        payload = buffer.getvalue()
                        member = tarfile.TarInfo(member.name[: -len("webp")] + "npy")
                    member.size = len(payload)
                    dst.addfile(member, io.BytesIO(payload))
            shard["bytes"] = target.stat().st_size
    manifest["format_version"] = 1
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
        old = Path(tmp) / "old"
        _old_format_copy(Path(new), old)
        sizes = {}
        for label, path in (("new", new), ("old", str(old))):
            manifest = read_manifest(path)
            shards = manifest["splits"]["train"]["shards"]
            sizes[label] = sum(s["bytes"] for s in shards) / sum(s["count"] for s in shards)
        figures: dict[str, object] = {"image_size": size,
                                      "train_samples": read_manifest(new)["counts"]["train"]}
        for label, path in (("old", str(old)), ("new", new)):
            for workers in (0, 2):
                rate = _rate(path, workers)
                figures[f"{label}_workers{workers}_images_per_s"] = round(rate, 1)
                print(f"{label} format, {workers} workers: {rate:.1f} images/s", file=sys.stderr)
        figures.update({
            "images_per_s": figures["new_workers2_images_per_s"],
            "bytes_per_sample_new": round(sizes["new"]),
            "bytes_per_sample_old": round(sizes["old"]),
            "loadavg_1min": round(os.getloadavg()[0], 2),
            "ratio": round(float(figures["new_workers2_images_per_s"])  # type: ignore[arg-type]
                           / float(figures["old_workers2_images_per_s"]), 3),  # type: ignore[arg-type]
        })
    return figures


if __name__ == "__main__":
    print(json.dumps(main()))

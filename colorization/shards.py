"""Lab shards: prepare a dataset snapshot from colour photos, and read its manifest.

A snapshot lives under one prefix (DESIGN.md): `manifest.json` plus
`train/shard-00000.tar ...` and `val/...`. Each tar sample (WebDataset layout) holds
`lab.npy` (float16 [3, S, S], L in [0, 100], a/b in Lab units) and `json` (source key, size).
The manifest is written last, so a snapshot with a manifest is complete and immutable.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from colorization import __version__, color, paths, storage
from colorization.constants import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_SAMPLE_SIZE,
    DEFAULT_SEED,
    DEFAULT_SHARD_SIZE,
    DEFAULT_VAL_FRACTION,
    IMAGE_SUFFIXES,
    MANIFEST_NAME,
    MIN_MEAN_CHROMA,
    PREPARE_LOG_EVERY,
    READ_THREADS,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
SPLITS = ("train", "val")


@dataclass(frozen=True)
class PrepareConfig:
    """Options of `prepare_dataset`; everything but `output` defines the snapshot."""

    source: str
    output: str | None = None  # default: <home>/datasets/<snapshot id>
    seed: int = DEFAULT_SEED
    sample_size: int = DEFAULT_SAMPLE_SIZE
    val_fraction: float = DEFAULT_VAL_FRACTION
    image_size: int = DEFAULT_IMAGE_SIZE
    shard_size: int = DEFAULT_SHARD_SIZE
    min_mean_chroma: float = MIN_MEAN_CHROMA

    def validate(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.sample_size < 2:
            raise ValueError(f"sample_size must be at least 2, got {self.sample_size}")
        if self.image_size < 8 or self.shard_size < 1:
            raise ValueError("image_size must be >= 8 and shard_size >= 1")


def sample_split(
    keys: list[str], *, seed: int, sample_size: int, val_fraction: float
) -> dict[str, list[str]]:
    """Seeded sample of `keys`, split into train / val. Independent of listing order."""
    pool = sorted(keys)
    chosen = random.Random(seed).sample(pool, min(sample_size, len(pool)))
    n_val = max(1, round(len(chosen) * val_fraction))
    if len(chosen) - n_val < 1:
        raise ValueError(f"need at least 2 images to split, found {len(chosen)}")
    return {"train": chosen[n_val:], "val": chosen[:n_val]}


def center_square(img: Image.Image, size: int) -> Image.Image:
    """Resize the short side to `size` (antialiased) and crop the centre square."""
    scale = size / min(img.size)
    width, height = max(size, round(img.width * scale)), max(size, round(img.height * scale))
    img = img.resize((width, height), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (width - size) // 2, (height - size) // 2
    return img.crop((left, top, left + size, top + size))


def photo_to_lab(data: bytes, *, name: str, image_size: int) -> np.ndarray:
    """Image bytes -> Lab float32 [3, S, S]. Raises ValueError for unreadable images."""
    img = center_square(color.load_image(data, name=name), image_size)
    rgb = color.image_to_tensor(img).unsqueeze(0)  # [1, 3, S, S]
    return color.rgb_to_lab(rgb)[0].numpy()


def mean_chroma(lab: np.ndarray) -> float:
    """Mean sqrt(a^2 + b^2) of a Lab array [3, H, W]; near 0 for grayscale photos."""
    return float(np.sqrt(lab[1] ** 2 + lab[2] ** 2).mean())


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _inputs(config: PrepareConfig, split: dict[str, list[str]]) -> dict[str, Any]:
    options = asdict(config)
    options.pop("output")
    options["source"] = config.source.rstrip("/")
    return {"format_version": FORMAT_VERSION, "options": options, "ids": split}


def _read_all(urls: list[str]) -> Iterator[tuple[str, bytes | Exception]]:
    """Read objects with a few threads, yielding (url, bytes or the error) in order."""

    def read(url: str) -> bytes | Exception:
        try:
            return storage.read_bytes(url)
        except OSError as exc:  # missing / unreadable object: report and go on
            return exc

    # Chunks bound the memory held in read-ahead when decoding is slower than reading.
    chunk = READ_THREADS * 4
    with ThreadPoolExecutor(READ_THREADS) as pool:
        for start in range(0, len(urls), chunk):
            part = urls[start:start + chunk]
            yield from zip(part, pool.map(read, part), strict=True)


def _write_split(
    config: PrepareConfig, split: str, keys: list[str], out: str, workdir: Path
) -> tuple[list[dict[str, Any]], list[dict[str, str]], list[str]]:
    """Write one split's shards; returns (shards, skipped, kept ids)."""
    source = config.source.rstrip("/")
    shards: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    kept: list[str] = []
    writer: wds.TarWriter | None = None
    shard_path: Path | None = None
    count = 0

    def close_shard() -> None:
        nonlocal writer
        if writer is None or shard_path is None:
            return
        writer.close()
        name = f"{split}/shard-{len(shards):05d}.tar"
        data = shard_path.read_bytes()
        storage.write_bytes(storage.join(out, name), data)
        shards.append({"name": name, "count": count, "bytes": len(data),
                       "sha256": hashlib.sha256(data).hexdigest()})
        writer = None

    started = time.monotonic()
    urls = [storage.join(source, key) for key in keys]
    for index, (url, data) in enumerate(_read_all(urls)):
        key = keys[index]
        try:
            if isinstance(data, Exception):
                raise ValueError(f"{url}: cannot read ({data})")
            lab = photo_to_lab(data, name=url, image_size=config.image_size)
        except ValueError as exc:
            logger.warning("skipping %s", exc)
            skipped.append({"id": key, "reason": str(exc)})
            continue
        if mean_chroma(lab) < config.min_mean_chroma:
            logger.info("skipping %s: grayscale or nearly so", url)
            skipped.append({"id": key, "reason": "grayscale (mean chroma below threshold)"})
            continue
        if writer is None:
            shard_path = workdir / f"{split}-{len(shards):05d}.tar"
            writer, count = wds.TarWriter(str(shard_path)), 0
        buffer = io.BytesIO()
        np.save(buffer, lab.astype(np.float16))
        # WebDataset keys may not contain dots; the source key travels in the json member.
        writer.write({"__key__": f"{split}{len(kept):07d}", "lab.npy": buffer.getvalue(),
                      "json": json.dumps({"id": key}).encode()})
        kept.append(key)
        count += 1
        if count >= config.shard_size:
            close_shard()
        if (index + 1) % PREPARE_LOG_EVERY == 0:
            logger.info("%s: %d/%d images (%.0f s)", split, index + 1, len(keys),
                        time.monotonic() - started)
    close_shard()
    return shards, skipped, kept


def prepare_dataset(config: PrepareConfig) -> str:
    """Build (or find) the Lab-shard snapshot of `config.source`; returns its URL.

    Idempotent: when a manifest for the same inputs exists, nothing is done.
    """
    config.validate()
    keys = [storage.relative_key(url, config.source)
            for url in storage.list_files(config.source, suffixes=IMAGE_SUFFIXES)]
    if len(keys) < 2:
        raise ValueError(f"{config.source}: found {len(keys)} images, need at least 2")
    split = sample_split(keys, seed=config.seed, sample_size=config.sample_size,
                         val_fraction=config.val_fraction)
    inputs = _inputs(config, split)
    digest = _digest(inputs)
    out = config.output or storage.join(paths.datasets_root(), digest[:12])
    manifest_url = storage.join(out, MANIFEST_NAME)
    if storage.exists(manifest_url):
        existing = storage.read_json(manifest_url)
        if existing.get("inputs_digest") != digest:
            raise ValueError(f"{out}: holds a different snapshot; snapshots are immutable, "
                             "choose another output")
        logger.info("dataset %s already prepared; nothing to do", out)
        return out
    logger.info("preparing %s: %d train / %d val images from %s", out,
                len(split["train"]), len(split["val"]), config.source)
    manifest: dict[str, Any] = {**inputs, "inputs_digest": digest, "source": config.source,
                                "code_version": __version__, "splits": {}, "skipped": []}
    with tempfile.TemporaryDirectory(prefix="shards-") as tmp:
        for name in SPLITS:
            shards, skipped, kept = _write_split(config, name, split[name], out, Path(tmp))
            if not kept:
                raise ValueError(f"{config.source}: no usable images left in split {name!r}")
            manifest["splits"][name] = {"count": len(kept), "ids": kept, "shards": shards}
            manifest["skipped"].extend(skipped)
    manifest["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    storage.write_json(manifest_url, manifest)
    return out


def read_manifest(dataset: str) -> dict[str, Any]:
    """The manifest of a prepared snapshot; FileNotFoundError names the dataset."""
    url = storage.join(dataset, MANIFEST_NAME)
    if not storage.exists(url):
        raise FileNotFoundError(f"{dataset}: no {MANIFEST_NAME}; is it a prepared dataset?")
    return storage.read_json(url)


def manifest_digest(dataset: str) -> str:
    """sha256 of the manifest: the identity of the data a model was trained on."""
    return hashlib.sha256(storage.read_bytes(storage.join(dataset, MANIFEST_NAME))).hexdigest()


def lab_tensor(sample_lab: np.ndarray) -> torch.Tensor:
    """A decoded `lab.npy` -> float32 tensor [3, S, S]."""
    return torch.from_numpy(np.asarray(sample_lab, dtype=np.float32))

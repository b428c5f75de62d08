"""Dataset snapshots: seeded split, Lab shards that match scikit-image, idempotence."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from skimage.color import rgb2lab

from colorization import storage
from colorization.shards import (
    PrepareConfig,
    center_square,
    manifest_digest,
    prepare_dataset,
    read_manifest,
    sample_split,
)


def _copy_photos(src: Path, dst: Path, count: int) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(p, dst)) for p in sorted(src.glob("*.jpg"))[:count]]


def _shard_samples(dataset: str, split: str) -> dict[str, np.ndarray]:
    """id -> Lab [3, S, S] read straight from the tar files, without our reader."""
    samples = {}
    for shard in read_manifest(dataset)["splits"][split]["shards"]:
        data = storage.read_bytes(storage.join(dataset, shard["name"]))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, payload in members.items():
            if name.endswith(".json"):
                key = name[: -len(".json")]
                source_id = json.loads(payload)["id"]
                samples[source_id] = np.load(io.BytesIO(members[key + ".lab.npy"]))
    return samples


def test_sample_split_is_seeded_and_order_independent():
    keys = [f"img{i:03d}.jpg" for i in range(50)]
    first = sample_split(keys, seed=3, sample_size=20, val_fraction=0.25)
    again = sample_split(list(reversed(keys)), seed=3, sample_size=20, val_fraction=0.25)
    other = sample_split(keys, seed=4, sample_size=20, val_fraction=0.25)
    assert first == again
    assert first != other
    assert (len(first["train"]), len(first["val"])) == (15, 5)
    assert not set(first["train"]) & set(first["val"])


def test_prepare_writes_manifest_and_lab_shards(tiny_dataset, fixture_photos):
    manifest = read_manifest(tiny_dataset)
    train, val = manifest["splits"]["train"], manifest["splits"]["val"]
    assert (train["count"], val["count"]) == (32, 8)
    assert [s["count"] for s in train["shards"]] == [12, 12, 8]
    assert [s["name"] for s in val["shards"]] == ["val/shard-00000.tar"]
    assert manifest["options"]["image_size"] == 32 and manifest["skipped"] == []
    for shard in train["shards"] + val["shards"]:
        data = storage.read_bytes(storage.join(tiny_dataset, shard["name"]))
        assert hashlib.sha256(data).hexdigest() == shard["sha256"]
    # The stored Lab matches scikit-image on the same centre crop (float16 storage).
    samples = _shard_samples(tiny_dataset, "val")
    assert sorted(samples) == sorted(val["ids"])
    for key, lab in list(samples.items())[:4]:
        with Image.open(fixture_photos / key) as img:
            crop = np.asarray(center_square(img.convert("RGB"), 32), dtype=np.float64) / 255
        expected = rgb2lab(crop).transpose(2, 0, 1)
        assert lab.shape == (3, 32, 32) and lab.dtype == np.float16
        assert np.abs(lab.astype(np.float64) - expected).max() < 0.1


def test_prepare_again_is_a_noop(tmp_path, fixture_photos):
    source = tmp_path / "photos"
    _copy_photos(fixture_photos, source, 6)
    config = PrepareConfig(source=str(source), image_size=16)
    first = prepare_dataset(config)
    manifest = storage.join(first, "manifest.json")
    mtime = os.stat(manifest).st_mtime_ns
    assert prepare_dataset(config) == first
    assert os.stat(manifest).st_mtime_ns == mtime
    # A different seed is a different snapshot, in its own folder.
    assert prepare_dataset(PrepareConfig(source=str(source), image_size=16, seed=1)) != first


def test_existing_output_with_other_inputs_is_refused(tmp_path, fixture_photos):
    source = tmp_path / "photos"
    _copy_photos(fixture_photos, source, 6)
    out = str(tmp_path / "snap")
    prepare_dataset(PrepareConfig(source=str(source), output=out, image_size=16))
    with pytest.raises(ValueError, match="different snapshot"):
        prepare_dataset(PrepareConfig(source=str(source), output=out, image_size=24))


def test_broken_and_grayscale_photos_are_skipped_and_inputs_untouched(tmp_path, fixture_photos):
    source = tmp_path / "photos"
    _copy_photos(fixture_photos, source, 8)
    (source / "broken.jpg").write_bytes(b"not a jpeg at all")
    with Image.open(fixture_photos / sorted(os.listdir(fixture_photos))[0]) as img:
        img.convert("L").convert("RGB").save(source / "gray.png")
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    dataset = prepare_dataset(PrepareConfig(source=str(source), image_size=16,
                                            val_fraction=0.3))
    manifest = read_manifest(dataset)
    reasons = {item["id"]: item["reason"] for item in manifest["skipped"]}
    assert set(reasons) == {"broken.jpg", "gray.png"}
    assert "not a readable image" in reasons["broken.jpg"] and "broken.jpg" in reasons["broken.jpg"]
    assert "grayscale" in reasons["gray.png"]
    kept = manifest["splits"]["train"]["ids"] + manifest["splits"]["val"]["ids"]
    assert len(kept) == 8 and "broken.jpg" not in kept
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before


def test_errors_name_the_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        prepare_dataset(PrepareConfig(source=str(tmp_path / "nowhere")))
    (tmp_path / "one").mkdir()
    with pytest.raises(ValueError, match="found 0 images"):
        prepare_dataset(PrepareConfig(source=str(tmp_path / "one")))
    with pytest.raises(ValueError, match="val_fraction"):
        PrepareConfig(source="x", val_fraction=1.5).validate()
    with pytest.raises(FileNotFoundError, match="prepared dataset"):
        read_manifest(str(tmp_path / "one"))


def test_prepare_from_and_to_s3(s3_bucket, fixture_photos, tmp_path):
    for photo in sorted(fixture_photos.glob("*.jpg"))[:6]:
        storage.upload(photo, storage.join(s3_bucket, "incoming/photos", photo.name))
    out = storage.join(s3_bucket, "datasets/snap")
    dataset = prepare_dataset(PrepareConfig(source=storage.join(s3_bucket, "incoming/photos"),
                                            output=out, image_size=16, val_fraction=0.34))
    assert dataset == out
    manifest = read_manifest(dataset)
    assert (manifest["splits"]["train"]["count"], manifest["splits"]["val"]["count"]) == (4, 2)
    assert len(manifest_digest(dataset)) == 64
    samples = _shard_samples(dataset, "train")
    assert sorted(samples) == sorted(manifest["splits"]["train"]["ids"])


def _bands(size: tuple[int, int], colours: list[tuple[int, int, int]], *,
           vertical: bool) -> Image.Image:
    """An RGB image cut into equal bands of `colours`: left to right, or top to bottom."""
    width, height = size
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    step = (width if vertical else height) // len(colours)
    for index, colour in enumerate(colours):
        if vertical:
            pixels[:, index * step:(index + 1) * step] = colour
        else:
            pixels[index * step:(index + 1) * step] = colour
    return Image.fromarray(pixels)


def test_center_square_keeps_only_the_centre(fixture_photos):
    """Guards the crop offsets: the centre square, not the top-left (or any other) corner."""
    red, green, blue = (200, 30, 30), (30, 200, 30), (30, 30, 200)
    # Five bands, the middle three green: the 20 px square of a 100 x 20 image (or, at 10 px,
    # of its 50 x 10 resize) lies well inside the green, clear of the bicubic filter's reach.
    colours = [red, green, green, green, blue]
    for size in (20, 10):
        wide = center_square(_bands((100, 20), colours, vertical=True), size)
        tall = center_square(_bands((20, 100), colours, vertical=False), size)
        for crop in (wide, tall):
            assert crop.size == (size, size)
            worst = int(np.abs(np.asarray(crop, dtype=int) - green).max())
            assert worst <= 1, f"{size} px crop strays {worst} levels from the centre colour"

    # Real photos against PIL's own centred fit. ImageOps.fit crops at fractional offsets;
    # center_square at whole pixels after the resize, so they agree where the resized margin
    # is even (otherwise they differ by half a pixel, which is no bug).
    checked = set()
    for photo in sorted(fixture_photos.glob("*.jpg"))[:6]:
        with Image.open(photo) as img:
            img = img.convert("RGB")
        for size in (32, 57):
            scale = size / min(img.size)
            margin = abs(round(img.width * scale) - round(img.height * scale))
            if margin % 2:
                continue
            ours = np.asarray(center_square(img, size), dtype=float)
            expected = np.asarray(ImageOps.fit(img, (size, size), Image.Resampling.BICUBIC,
                                               centering=(0.5, 0.5)), dtype=float)
            # Resampling order alone: ~0.2-0.9 mean; a crop off by a pixel or more: 10-50.
            error = float(np.abs(ours - expected).mean())
            assert error < 2, f"{photo.name} at {size} px: mean error {error:.2f}"
            checked.add(img.width > img.height)
    assert checked == {True, False}  # both landscape and portrait photos were compared

"""Loaders over Lab shards: normalised pairs, whole epochs, seeded shuffling, S3 cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from colorization import color, storage
from colorization.data import LoaderConfig, cache_dir, local_shards, make_loader
from colorization.shards import PrepareConfig, prepare_dataset, read_manifest


def _epoch(dataset: str, split: str, config: LoaderConfig) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = list(make_loader(dataset, split, config))
    return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])


def test_one_epoch_yields_every_sample_once_normalised(tiny_dataset):
    l_norm, ab = _epoch(tiny_dataset, "train", LoaderConfig(batch_size=5, shuffle=False,
                                                            augment=False))
    assert l_norm.shape == (32, 1, 32, 32) and ab.shape == (32, 2, 32, 32)
    assert l_norm.min() >= -1 and l_norm.max() <= 1 and ab.abs().max() <= 1
    # Normalised values decode back to plausible photos: L spans dark to light.
    lightness = color.denormalize_l(l_norm)
    assert lightness.min() < 20 and lightness.max() > 80
    # Every sample exactly once: the per-image mean lightness values are all distinct.
    means = lightness.mean(dim=(1, 2, 3))
    assert len(set(means.tolist())) == 32


def test_shuffle_is_seeded_and_keeps_the_same_samples(tiny_dataset):
    plain, _ = _epoch(tiny_dataset, "train", LoaderConfig(batch_size=8, shuffle=False,
                                                         augment=False))
    first, _ = _epoch(tiny_dataset, "train", LoaderConfig(batch_size=8, seed=1, augment=False))
    again, _ = _epoch(tiny_dataset, "train", LoaderConfig(batch_size=8, seed=1, augment=False))
    other, _ = _epoch(tiny_dataset, "train", LoaderConfig(batch_size=8, seed=2, augment=False))
    assert torch.equal(first, again)
    assert not torch.equal(first, other) and not torch.equal(first, plain)
    key = lambda batch: sorted(batch.mean(dim=(1, 2, 3)).tolist())  # noqa: E731
    assert key(first) == key(plain)


def test_augmentation_flips_horizontally(tiny_dataset):
    torch.manual_seed(0)
    plain, plain_ab = _epoch(tiny_dataset, "val", LoaderConfig(batch_size=8, shuffle=False,
                                                               augment=False))
    flipped, flipped_ab = _epoch(tiny_dataset, "val", LoaderConfig(batch_size=8, shuffle=False,
                                                                   augment=True))
    same = [torch.equal(a, b) for a, b in zip(plain, flipped, strict=True)]
    mirrored = [torch.equal(a.flip(-1), b) for a, b in zip(plain, flipped, strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert any(mirrored) and not all(mirrored)
    for index, was_mirrored in enumerate(mirrored):
        expected = plain_ab[index].flip(-1) if was_mirrored else plain_ab[index]
        assert torch.equal(flipped_ab[index], expected)


def _remote_dataset(bucket: str, fixture_photos) -> str:
    """5 fixture photos prepared at 16 px into the bucket: 3 train / 2 val, one shard each."""
    for photo in sorted(fixture_photos.glob("*.jpg"))[:5]:
        storage.upload(photo, storage.join(bucket, "photos", photo.name))
    return prepare_dataset(PrepareConfig(source=storage.join(bucket, "photos"),
                                         output=storage.join(bucket, "snap"),
                                         image_size=16, val_fraction=0.4))


def test_remote_shards_are_cached_and_verified(s3_bucket, fixture_photos):
    dataset = _remote_dataset(s3_bucket, fixture_photos)
    files = local_shards(dataset, "train")
    assert len(files) == 1 and files[0].startswith(str(cache_dir()))
    shard = read_manifest(dataset)["splits"]["train"]["shards"][0]
    assert storage.read_bytes(files[0]) == storage.read_bytes(storage.join(dataset,
                                                                          shard["name"]))
    l_norm, _ = _epoch(dataset, "train", LoaderConfig(batch_size=2, shuffle=False))
    assert l_norm.shape == (3, 1, 16, 16)


def test_corrupted_cached_shard_is_fetched_again(s3_bucket, fixture_photos):
    """Guards the sha256 check of cached shards: a damaged cache entry of the right size must
    be fetched again, not streamed into training."""
    dataset = _remote_dataset(s3_bucket, fixture_photos)
    shard = read_manifest(dataset)["splits"]["train"]["shards"][0]
    config = LoaderConfig(batch_size=2, shuffle=False, augment=False)
    (cached,) = local_shards(dataset, "train")
    expected_l, expected_ab = _epoch(dataset, "train", config)
    # Flip bytes mid-file: same size, tar headers intact, sample values silently wrong.
    data = bytearray(Path(cached).read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    Path(cached).write_bytes(bytes(data))
    # Filesystem timestamps can be coarser than this test is quick: date the damage later.
    stamp = os.stat(cached).st_mtime_ns + 10**9
    os.utime(cached, ns=(stamp, stamp))
    assert os.path.getsize(cached) == shard["bytes"]

    assert local_shards(dataset, "train") == [cached]
    assert hashlib.sha256(Path(cached).read_bytes()).hexdigest() == shard["sha256"]
    l_norm, ab = _epoch(dataset, "train", config)
    assert l_norm.shape == (3, 1, 16, 16)
    assert torch.equal(l_norm, expected_l) and torch.equal(ab, expected_ab)


def test_unknown_split_is_named(tiny_dataset):
    import pytest

    with pytest.raises(ValueError, match="'test'"):
        local_shards(tiny_dataset, "test")


def test_worker_processes_yield_the_same_samples(tiny_dataset):
    config = LoaderConfig(batch_size=4, shuffle=False, augment=False)
    single, _ = _epoch(tiny_dataset, "train", config)
    multi, _ = _epoch(tiny_dataset, "train", LoaderConfig(batch_size=4, shuffle=False,
                                                          augment=False, num_workers=2))
    # Workers split the 3 shards between them, so only the order may differ.
    key = lambda batch: sorted(batch.mean(dim=(1, 2, 3)).tolist())  # noqa: E731
    assert multi.shape == single.shape and key(multi) == key(single)


def test_format_version_1_snapshots_still_load(tmp_path):
    """Snapshots written before format_version 2 (float16 `lab.npy`) load unchanged."""
    import io
    import json

    import numpy as np
    import webdataset as wds

    rng = np.random.default_rng(0)
    labs = [np.stack([rng.uniform(0, 100, (8, 8)), rng.uniform(-80, 80, (8, 8)),
                      rng.uniform(-80, 80, (8, 8))]).astype(np.float16) for _ in range(6)]
    snapshot = tmp_path / "v1"
    (snapshot / "train").mkdir(parents=True)
    with wds.TarWriter(str(snapshot / "train" / "shard-00000.tar")) as writer:
        for index, lab in enumerate(labs):
            buffer = io.BytesIO()
            np.save(buffer, lab)
            writer.write({"__key__": f"train{index:07d}", "lab.npy": buffer.getvalue(),
                          "json": json.dumps({"id": f"{index}.jpg"}).encode()})
    shard = {"name": "train/shard-00000.tar", "count": 6, "bytes": 0, "sha256": ""}
    (snapshot / "manifest.json").write_text(json.dumps({
        "format_version": 1, "options": {"image_size": 8}, "skipped": [],
        "splits": {"train": {"count": 6, "ids": [], "shards": [shard]}}}))
    l_norm, ab = _epoch(str(snapshot), "train", LoaderConfig(batch_size=4, shuffle=False,
                                                            augment=False))
    expected = torch.from_numpy(np.stack(labs).astype(np.float32))
    assert torch.allclose(color.denormalize_l(l_norm), expected[:, :1], atol=1e-4)
    assert torch.allclose(ab * 110, expected[:, 1:], atol=1e-4)


def test_ddp_ranks_get_their_own_shards_and_equal_batch_counts(tiny_dataset):
    """Two ranks over 3 shards of 10, 11, 11 samples: rank 0 holds 21, rank 1 holds 11;
    both stop at 11 // 4 = 2 batches, with 2 loader workers each, and share no sample."""
    epochs = {}
    for rank in (0, 1):
        loader = make_loader(tiny_dataset, "train", LoaderConfig(
            batch_size=4, shuffle=False, augment=False, num_workers=2, rank=rank,
            world_size=2))
        batches = list(loader)
        assert len(batches) == len(loader) == 2
        epochs[rank] = {round(v, 4) for b in batches for v in b[0].mean(dim=(1, 2, 3)).tolist()}
    assert not epochs[0] & epochs[1]
    import pytest

    with pytest.raises(ValueError, match="cannot feed 4 ranks"):
        make_loader(tiny_dataset, "train", LoaderConfig(batch_size=4, rank=0, world_size=4))


def test_format_version_2_snapshots_still_load(tmp_path):
    """Snapshots of format_version 2 (lossless WebP `lab.webp` of the 8-bit codes) load as
    the codes' Lab: L = code * 100 / 255, a = code - 128, b = code - 128."""
    import io
    import json

    import numpy as np
    import webdataset as wds
    from PIL import Image

    rng = np.random.default_rng(0)
    codes = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(6)]  # [S, S, 3]
    snapshot = tmp_path / "v2"
    (snapshot / "train").mkdir(parents=True)
    with wds.TarWriter(str(snapshot / "train" / "shard-00000.tar")) as writer:
        for index, pixels in enumerate(codes):
            buffer = io.BytesIO()
            Image.fromarray(pixels, mode="RGB").save(buffer, format="WEBP", lossless=True)
            writer.write({"__key__": f"train{index:07d}", "lab.webp": buffer.getvalue(),
                          "json": json.dumps({"id": f"{index}.jpg"}).encode()})
    shard = {"name": "train/shard-00000.tar", "count": 6, "bytes": 0, "sha256": ""}
    (snapshot / "manifest.json").write_text(json.dumps({
        "format_version": 2, "options": {"image_size": 8},
        "splits": {"train": {"count": 6, "ids": [], "shards": [shard]}}}))
    l_norm, ab = _epoch(str(snapshot), "train", LoaderConfig(batch_size=4, shuffle=False,
                                                            augment=False))
    expected = torch.from_numpy(np.stack(codes).astype(np.float64)).permute(0, 3, 1, 2)
    assert torch.allclose(color.denormalize_l(l_norm).double(), expected[:, :1] * 100 / 255,
                          atol=1e-4)
    assert torch.allclose(ab.double() * 110, (expected[:, 1:] - 128).clamp(-110, 110),
                          atol=1e-4)

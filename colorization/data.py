"""Torch datasets and loaders over a snapshot's Lab shards.

Shards of a local snapshot are read in place; shards in S3 are fetched once into a local
cache (checked against the manifest's sha256) and streamed from there by WebDataset.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, get_worker_info

from colorization import color, paths, storage
from colorization.constants import SHUFFLE_BUFFER
from colorization.samples import AB_CODE_OFFSET, L_CODE_SCALE, sample_codes, sample_lab
from colorization.shards import read_manifest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoaderConfig:
    """How batches are drawn from one split."""

    batch_size: int
    shuffle: bool = True
    augment: bool = True  # random horizontal flips
    num_workers: int = 0
    seed: int = 0
    # DDP: this process's rank among world_size; None reads torch.distributed when it is
    # initialised (else a single process).
    rank: int | None = None
    world_size: int | None = None

    def ranks(self) -> tuple[int, int]:
        """(rank, world size) of this process."""
        if self.world_size is not None:
            return self.rank or 0, self.world_size
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1


def cache_dir() -> Path:
    """Local cache for shards fetched from object storage."""
    return paths.cache_root() / "shards"


def local_shards(dataset: str, split: str) -> list[str]:
    """Local file paths of one split's shards, downloading remote ones when needed."""
    manifest = read_manifest(dataset)
    if split not in manifest["splits"]:
        raise ValueError(f"{dataset}: no split {split!r}; has {sorted(manifest['splits'])}")
    files = []
    for shard in manifest["splits"][split]["shards"]:
        url = storage.join(dataset, shard["name"])
        if not storage.is_remote(url):
            files.append(storage.local_path(url))
            continue
        target = cache_dir() / shard["sha256"][:2] / f"{shard['sha256']}.tar"
        if not _verified(target, shard["sha256"]):
            logger.info("fetching %s", url)
            storage.download(url, target)
            if not _verified(target, shard["sha256"]):
                target.unlink()
                raise ValueError(f"{url}: checksum does not match the manifest")
        files.append(str(target))
    return files


# Cached shards already checked in this process, by (path, size, mtime): every epoch asks
# for the shards again, and hashing gigabytes each time would dominate a short epoch.
_VERIFIED: set[tuple[str, int, int]] = set()


def _verified(path: Path, sha256: str) -> bool:
    """Whether `path` exists with content `sha256` (hashed once per file version)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return False
    key = (str(path), info.st_size, info.st_mtime_ns)
    if key in _VERIFIED:
        return True
    if _sha256(path) != sha256:
        return False
    _VERIFIED.add(key)
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _forget_inherited_exit_hooks(worker_id: int) -> None:
    """DataLoader worker init: drop the thread-exit hooks of Prefect's services.

    Prefect bug (Prefect 3.8.8, CPython 3.11.7, torch 2.14.1): a process forked under a flow
    run exits with code 1. `_QueueServiceBase.start` (prefect/_internal/concurrency/
    services.py:127) calls `threading._register_atexit(self._at_exit)` for the APILogWorker
    and EventsWorker. Prefect's after-fork hook (`reset_for_fork`) marks the child's copies
    stopped with `_done_event = None` but keeps the exit hook, so at the child's thread
    shutdown `_drain` fails `assert self._done_event is not None` (services.py:245): exit
    code 1 under multiprocessing (the loader raises), an ignored traceback after os.fork().
    Reproduction; prints "child exit code: 1" (0 with this function run in the child):

        import multiprocessing as mp
        from prefect import flow, get_run_logger

        @flow
        def parent() -> int | None:
            get_run_logger().info("starts the log service")
            child = mp.get_context("fork").Process(target=print)
            child.start(), child.join()
            return child.exitcode

        print("child exit code:", parent())

    Dropping only Prefect's hooks is safe: the worker sends nothing to Prefect.
    tests/flows/test_loader_workers.py fails when Prefect or CPython changes under this.
    """
    hooks = getattr(threading, "_threading_atexits", None)  # CPython's list of hooks
    if hooks:
        hooks[:] = [hook for hook in hooks if not _is_prefect_hook(hook)]


def _is_prefect_hook(hook: object) -> bool:
    owner = getattr(getattr(hook, "func", hook), "__self__", None)
    return type(owner).__module__.startswith("prefect.")


def _to_lab(sample: dict, augment: bool) -> np.ndarray:
    """Raw sample -> its 8-bit Lab codes, uint8 [3, S, S] (format_version 2 and 3), or
    float32 Lab [3, S, S] (format_version 1); flipped left-right half of the time."""
    lab = sample_codes(sample)
    if lab is None:
        lab = sample_lab(sample)
    if augment and torch.rand(()) < 0.5:
        lab = lab[..., ::-1]  # a view: the collation copies
    return lab


def _batch_tensor(shape: tuple[int, ...]) -> torch.Tensor:
    """An empty float32 batch tensor; in a loader worker it is made in shared memory, so
    handing it to the training process copies nothing (as torch's default collation)."""
    out = torch.empty(shape)
    return out.share_memory_() if get_worker_info() is not None else out


def _collate(labs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples from `_to_lab` -> (L [B, 1, S, S], ab [B, 2, S, S]), both in [-1, 1].

    The 8-bit codes are stacked as uint8 and converted once per batch: L / 50 - 1 is
    code * (100 / 255) / 50 - 1, ab / 110 is (code - 128) / 110, clamped.
    """
    stacked = torch.from_numpy(np.stack(labs))  # [B, 3, S, S]
    if stacked.dtype != torch.uint8:  # float Lab of format_version 1
        return color.normalize_l(stacked[:, :1]), color.normalize_ab(stacked[:, 1:])
    batch, _, height, width = stacked.shape
    l_norm = _batch_tensor((batch, 1, height, width))
    l_norm.copy_(stacked[:, :1]).mul_(1.0 / (L_CODE_SCALE * color.L_CENTER)).sub_(1.0)
    ab = _batch_tensor((batch, 2, height, width))
    ab.copy_(stacked[:, 1:]).sub_(AB_CODE_OFFSET).div_(color.AB_SCALE).clamp_(-1.0, 1.0)
    return l_norm, ab


def _rank_shards(files: list[str], counts: list[int], config: LoaderConfig
                 ) -> tuple[list[str], int | None]:
    """This rank's shards (round robin) and the batch count every rank can reach, or None
    for a single process. Each rank yields at least ceil(n_rank / batch) batches, however
    its workers split the shards, so capping all at floor(min n_rank / batch) makes the
    counts equal, as DDP's collective calls need."""
    rank, world = config.ranks()
    if world <= 1:
        return files, None
    if len(files) < world:
        raise ValueError(f"{len(files)} shards cannot feed {world} ranks; prepare more shards")
    per_rank = [sum(counts[r::world]) for r in range(world)]
    return files[rank::world], min(per_rank) // config.batch_size


def split_dataset(dataset: str, split: str, config: LoaderConfig) -> wds.WebDataset:
    """An iterable dataset over one split, one pass an epoch: per sample its Lab as
    `_to_lab` gives it; `_collate` makes (L, ab) batches of them."""
    files, _ = _rank_shards(local_shards(dataset, split), _shard_counts(dataset, split), config)
    pipeline = wds.WebDataset(
        files,
        shardshuffle=len(files) if config.shuffle else False,
        nodesplitter=None,  # _rank_shards did it; workers still split by wds's default
        empty_check=False,
        seed=config.seed,
    )
    if config.shuffle:
        pipeline = pipeline.shuffle(SHUFFLE_BUFFER, seed=config.seed)
    # A partial, not a lambda: it must pickle for DataLoader workers under `spawn`.
    # Samples are decoded by `_to_lab` itself, by what the shard holds; `_collate` batches.
    return pipeline.map(partial(_to_lab, augment=config.augment))


def _shard_counts(dataset: str, split: str) -> list[int]:
    return [int(s["count"]) for s in read_manifest(dataset)["splits"][split]["shards"]]


class EpochLimited:
    """A loader cut at `batches` per epoch (DDP: the same count on every rank)."""

    def __init__(self, loader: DataLoader, batches: int) -> None:
        self.loader, self.batches = loader, batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return itertools.islice(iter(self.loader), self.batches)

    def __len__(self) -> int:
        return self.batches


def make_loader(dataset: str, split: str, config: LoaderConfig) -> DataLoader | EpochLimited:
    """A DataLoader yielding (L [B, 1, S, S], ab [B, 2, S, S]) batches; under DDP every
    rank gets its own shards and the same number of batches."""
    loader = DataLoader(
        split_dataset(dataset, split, config),
        batch_size=config.batch_size,
        collate_fn=_collate,
        num_workers=config.num_workers,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=_forget_inherited_exit_hooks,
    )
    _, batches = _rank_shards(local_shards(dataset, split), _shard_counts(dataset, split),
                              config)
    return loader if batches is None else EpochLimited(loader, batches)

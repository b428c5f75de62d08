"""Where a snapshot's photos come from: a registry of source kinds (folder or prefix, COCO).

A source lists its candidates (photo id, where to read it, expected size) in walk order,
fetches what a batch needs and reads the bytes for conversion. Both kinds share the
exclusion list and the filters of colorization.samples.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import webdataset as wds

from colorization import coco, curation, samples, storage
from colorization.constants import CONVERT_CHUNK, IMAGE_SUFFIXES, READ_THREADS

if TYPE_CHECKING:
    from colorization.shards import PrepareConfig

logger = logging.getLogger(__name__)

Order = Callable[..., list[str]]  # seeded_order(ids, seed=...)
Candidate = dict[str, Any]  # {"id", "url", "size": [w, h] | None, "excluded", ...}


class Source(Protocol):
    excluded: set[str]

    def identity(self) -> dict[str, Any]: ...
    def candidates(self, order: Order) -> tuple[list[Candidate], dict[str, Any]]: ...


def _exclusions(config: PrepareConfig) -> tuple[str | None, set[str]]:
    """(URL of the list used or None, its ids). An explicit list must exist; the storage
    root's default list is used when it exists."""
    if config.exclude:
        return config.exclude, curation.read_exclusions(config.exclude, missing_ok=False)
    default = curation.exclusion_list_url()
    ids = curation.read_exclusions(default)
    return (default if storage.exists(default) else None), ids


def _is_excluded(excluded: set[str], photo_id: str, coco_id: int | None = None) -> bool:
    names = {photo_id, photo_id.rsplit("/", 1)[-1]}
    if coco_id is not None:
        names.add(str(coco_id))
    return bool(names & excluded)


class FolderSource:
    """A folder or s3:// prefix of photos; ids are keys relative to it."""

    def __init__(self, config: PrepareConfig) -> None:
        self.config = config
        self.list_url, self.excluded = _exclusions(config)
        self.keys = sorted(storage.relative_key(url, config.source)
                           for url in storage.list_files(config.source, suffixes=IMAGE_SUFFIXES))
        if len(self.keys) < 2:
            raise ValueError(f"{config.source}: found {len(self.keys)} images, need at least 2")

    def identity(self) -> dict[str, Any]:
        return {"kind": "folder", "keys": storage_digest(self.keys)}

    def candidates(self, order: Order) -> tuple[list[Candidate], dict[str, Any]]:
        source = self.config.source.rstrip("/")
        rows = [{"id": key, "url": storage.join(source, key), "size": None,
                 "excluded": _is_excluded(self.excluded, key)}
                for key in order(self.keys, seed=self.config.seed)]
        return rows, {"exclusions": {"url": self.list_url, "count": len(self.excluded)}}


class CocoSource:
    """`coco://<split>`: photos from a COCO mirror, kept under <home>/raw/coco/<split>."""

    def __init__(self, config: PrepareConfig) -> None:
        self.config = config
        self.split = coco.split_of(config.source)
        self.mirror = coco.mirror_url(config.coco_mirror)
        self.list_url, self.excluded = _exclusions(config)

    def identity(self) -> dict[str, Any]:
        # The mirror is not part of the identity: every mirror serves the same photos.
        return {"kind": "coco", "split": self.split}

    def candidates(self, order: Order) -> tuple[list[Candidate], dict[str, Any]]:
        annotations, origin = coco.load_annotations(self.split, mirror=self.mirror)
        photos = {p.id: p for p in coco.photos(annotations, split=self.split, mirror=self.mirror)}
        raw = coco.raw_root(self.split)
        rows = []
        for photo_id in order(list(photos), seed=self.config.seed):
            photo = photos[photo_id]
            rows.append({"id": photo.id, "url": storage.join(raw, photo.id), "fetch": photo.url,
                         "size": [photo.width, photo.height], "coco_id": photo.image_id,
                         "objects": coco.objects(annotations, photo.image_id),
                         "excluded": _is_excluded(self.excluded, photo.id, photo.image_id)})
        logger.info("%s: %d images in %s", self.config.source, len(rows), origin)
        return rows, {"exclusions": {"url": self.list_url, "count": len(self.excluded)},
                      "coco": {"split": self.split, "annotations": origin,
                               "mirror": self.mirror}}


def storage_digest(keys: list[str]) -> str:
    """sha256 of a sorted key list: a folder's photo set, in the snapshot's identity."""
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


SOURCES: dict[str, Callable[[PrepareConfig], Source]] = {"coco": CocoSource,
                                                         "folder": FolderSource}


def open_source(config: PrepareConfig) -> Source:
    """The source kind of `config.source`, looked up in SOURCES."""
    return SOURCES["coco" if coco.is_coco(config.source) else "folder"](config)


def fetch_batch(config: PrepareConfig, batch: list[Candidate], record: Path, index: int,
                progress: Callable[[str, int, int], None] | None = None) -> dict[str, int]:
    """Download the batch's photos that are not kept yet (COCO only); the failures are
    recorded under `record` for the conversion to report."""
    wanted = [c for c in batch if c.get("fetch") and not c["excluded"]]
    if not wanted:
        return {"downloaded": 0, "cached": 0, "failed": 0}
    split = coco.split_of(config.source)
    photos = [coco.CocoPhoto(id=c["id"], image_id=c["coco_id"], url=c["fetch"],
                             width=c["size"][0], height=c["size"][1]) for c in wanted]
    done = [0]

    def tick(step: int) -> None:
        done[0] += step
        if progress:
            progress("download", done[0], len(photos))

    report = coco.fetch(photos, dest=coco.raw_root(split), on_done=tick)
    record.mkdir(parents=True, exist_ok=True)
    storage.write_bytes(str(record / f"batch-{index:05d}.json"), json.dumps(report.failed).encode())
    logger.info("batch %d: %d downloaded, %d already kept, %d failed", index,
                len(report.downloaded), len(report.cached), len(report.failed))
    return {"downloaded": len(report.downloaded), "cached": len(report.cached),
            "failed": len(report.failed)}


def convert_batch(config: PrepareConfig, batch: list[Candidate], record: Path,
                  index: int, *, stage: Path | None = None) -> list[samples.Outcome]:
    """Outcomes of the batch's candidates, in order: excluded, failed fetches, and the
    photos read and converted in worker processes (which stage kept samples in the
    `stage` folder when given: see `samples.convert_many`)."""
    failed_file = record / f"batch-{index:05d}.json"
    failed: dict[str, list[str]] = (json.loads(failed_file.read_bytes())
                                    if failed_file.exists() else {})
    todo = [c for c in batch if not c["excluded"] and c["id"] not in failed]

    def read(candidate: Candidate) -> bytes | str | Path:
        if not storage.is_remote(candidate["url"]):  # read by the worker: no copy through a pipe
            return Path(storage.local_path(candidate["url"]))
        try:
            return storage.read_bytes(candidate["url"])
        except OSError as exc:  # missing / unreadable object: reported, the rest goes on
            return f"{candidate['url']}: cannot read ({exc})"

    with ThreadPoolExecutor(READ_THREADS) as pool:
        data = list(pool.map(read, todo))
    items = [(c["id"], d, tuple(c["size"]) if c["size"] else None)
             for c, d in zip(todo, data, strict=True)]
    workers = config.workers or (len(os.sched_getaffinity(0))
                                 if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    converted = iter(samples.convert_many(items, config.filters(), workers=workers,
                                          chunk=CONVERT_CHUNK, stage=stage))
    list_url = _exclusions(config)[0] or "the exclusion list"
    outcomes = []
    for candidate in batch:
        if candidate["excluded"]:
            outcomes.append(samples.Outcome(candidate["id"], "excluded", f"listed in {list_url}"))
        elif candidate["id"] in failed:
            reason, detail = failed[candidate["id"]]
            outcomes.append(samples.Outcome(candidate["id"], reason, detail))
        else:
            outcomes.append(next(converted))
    return outcomes


def deterministic_tar(fileobj: Any) -> wds.TarWriter:
    """A WebDataset tar writer whose bytes depend only on what is written: fixed mtime,
    owner and mode (members are written in sorted order by the writer itself)."""
    return wds.TarWriter(fileobj, user="colorization", group="colorization", mtime=0.0)

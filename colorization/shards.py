"""Lab shards: prepare a curated dataset snapshot from colour photos; read its manifest.

Sources: a folder, an s3:// prefix, or `coco://<split>` (colorization.coco). The sample is
one seeded walk: every photo id is ordered by sha256("<seed>:<id>") (identical on every
machine and Python version), and photos are taken in that order until `sample_size` pass
the filters (colorization.samples); the first round(val_fraction * n) of them are `val`,
the rest `train`. Work happens in batches of PREPARE_BATCH candidates (download, then
conversion in worker processes), staged in a local work folder so an interrupted run
resumes; the Prefect flow maps the same library calls over tasks.

A snapshot lives under one prefix: `manifest.json` plus `train/shard-00000.tar ...` and
`val/...`. Each tar sample (WebDataset layout, key `<split><index:07d>`) holds `lab.zst`
(format_version 3, see colorization.samples; format_version 2 held lossless WebP
`lab.webp` and 1 float16 `lab.npy`, both still read) and
`json` ({"id": photo id}). Tars are byte-identical across runs (fixed mtime, owner and
order); each split has max(ceil(n / shard_size), min(32, n // 16)) shards of near-equal
size. The manifest is written last, so a snapshot with a manifest is complete and
immutable; preparing the same inputs again is a no-op. Manifest fields (version 2):

- `format_version` (3), `sample` (member name and encoding), `options` (the PrepareConfig
  fields that define the snapshot), `source`, `inputs_digest` (sha256 of the inputs, whose
  first 12 hex digits name the default folder), `code_version`, `created_at`;
- `exclusions`: {"url": list used or null, "count": ids in it};
- `splits`: {"train"|"val": {"count", "ids" (photo ids, walk order), "shards": [{"name",
  "count", "bytes", "sha256"}]}};
- `dropped`: every considered photo that was left out, in walk order: {"id", "reason"
  (excluded, unreadable, size_mismatch, too_small, grayscale, single_tint), "detail"
  (names the list for `excluded`), "scores" (as below, or null when it did not decode)};
- `scores`: {photo id: {"mean_chroma", "hue_spread"}} for every kept photo;
- `counts`: {"considered", "kept", "train", "val", "dropped": {reason: n}};
- `bytes`: {"total": shard bytes, "per_sample"};
- `coco` (coco:// sources only): {"split", "annotations" (URL of the file used; a zip
  member as `<zip URL>#<member>`), "mirror", "image_ids": {photo id: COCO image id},
  "objects": {photo id: [{"category", "bbox": [x, y, w, h]}]}} for every considered photo.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from colorization import __version__, paths, storage
from colorization import sourcing as _sourcing
from colorization.constants import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_SAMPLE_SIZE,
    DEFAULT_SEED,
    DEFAULT_SHARD_SIZE,
    DEFAULT_VAL_FRACTION,
    MANIFEST_NAME,
    MIN_HUE_SPREAD,
    MIN_MEAN_CHROMA,
    MIN_SHARD_SAMPLES,
    MIN_TRAIN_SHARDS,
    PREPARE_BATCH,
    SAMPLE_FORMAT_VERSION,
    SHARD_WRITE_THREADS,
)
from colorization.samples import DROP_REASONS, SAMPLE_ENCODING, SAMPLE_MEMBER, FilterConfig

logger = logging.getLogger(__name__)

FORMAT_VERSION = SAMPLE_FORMAT_VERSION
SPLITS = ("train", "val")
# Callback of long phases: (phase, photos done so far, photos in the phase).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PrepareConfig:
    """Options of `prepare_dataset`. Everything but `output`, `exclude`, `coco_mirror` and
    `workers` defines the snapshot (the exclusion list counts by its content)."""

    source: str  # folder, s3:// prefix or coco://<split>
    output: str | None = None  # default: <home>/datasets/<snapshot id>
    seed: int = DEFAULT_SEED
    sample_size: int = DEFAULT_SAMPLE_SIZE
    val_fraction: float = DEFAULT_VAL_FRACTION
    image_size: int = DEFAULT_IMAGE_SIZE
    shard_size: int = DEFAULT_SHARD_SIZE
    min_mean_chroma: float = MIN_MEAN_CHROMA
    min_hue_spread: float = MIN_HUE_SPREAD
    min_side: int | None = None  # default: image_size (never upsample)
    exclude: str | None = None  # list URL; default: the storage root's, when it exists
    coco_mirror: str | None = None  # default: $COLORIZATION_COCO_MIRROR, else COCO's host
    workers: int | None = None  # conversion processes; default: the CPU count

    def validate(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.sample_size < 2:
            raise ValueError(f"sample_size must be at least 2, got {self.sample_size}")
        if self.image_size < 8 or self.shard_size < 1:
            raise ValueError("image_size must be >= 8 and shard_size >= 1")

    def filters(self) -> FilterConfig:
        return FilterConfig(image_size=self.image_size,
                            min_side=self.min_side or self.image_size,
                            min_mean_chroma=self.min_mean_chroma,
                            min_hue_spread=self.min_hue_spread)

    def defining_options(self) -> dict[str, Any]:
        options = asdict(self)
        for name in ("output", "exclude", "coco_mirror", "workers"):
            options.pop(name)
        options["source"] = self.source.rstrip("/")
        options["min_side"] = self.min_side or self.image_size
        return options


def seeded_order(ids: list[str], *, seed: int) -> list[str]:
    """The walk order: ids sorted by sha256("<seed>:<id>"); independent of listing order."""
    return sorted(set(ids), key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).digest())


def shard_count(count: int, shard_size: int) -> int:
    """Shards for `count` samples: enough for `shard_size` each, and up to MIN_TRAIN_SHARDS
    (of at least MIN_SHARD_SAMPLES) so ranks x workers always have shards to split."""
    return max(1, math.ceil(count / shard_size), min(MIN_TRAIN_SHARDS, count // MIN_SHARD_SAMPLES))


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Plan:
    """A snapshot in preparation: where it goes and where its staged work lives."""

    config: PrepareConfig
    out: str
    digest: str
    work: str  # local folder: candidates, per-batch results and staged samples
    done: bool
    batches: int


def plan_snapshot(config: PrepareConfig) -> Plan:
    """Identify the snapshot of `config` and, unless it exists, stage its candidate list."""
    config.validate()
    source = _sourcing.open_source(config)
    inputs = {"format_version": FORMAT_VERSION, "options": config.defining_options(),
              "source": source.identity(), "exclusions": sorted(source.excluded)}
    digest = _digest(inputs)
    out = config.output or storage.join(paths.datasets_root(), digest[:12])
    # Keyed by output too: staged candidates name the raw folder of this storage root.
    work_key = hashlib.sha256(f"{digest}\n{out}".encode()).hexdigest()[:24]
    work = Path(tempfile.gettempdir()) / "colorization-prepare" / work_key
    manifest_url = storage.join(out, MANIFEST_NAME)
    if storage.exists(manifest_url):
        if storage.read_json(manifest_url).get("inputs_digest") != digest:
            raise ValueError(f"{out}: holds a different snapshot; snapshots are immutable, "
                             "choose another output")
        logger.info("dataset %s already prepared; nothing to do", out)
        return Plan(config, out, digest, str(work), True, 0)
    source_file = work / "source.json"  # written last: the candidate files are complete
    if not source_file.exists():
        candidates, extra = source.candidates(seeded_order)
        (work / "candidates").mkdir(parents=True, exist_ok=True)
        for start in range(0, len(candidates), PREPARE_BATCH):
            _write_json(work / "candidates" / f"{start // PREPARE_BATCH:05d}.json",
                        candidates[start:start + PREPARE_BATCH])
        _write_json(source_file, {**extra, "candidates": len(candidates)})
    total = _read_json(source_file)["candidates"]
    batches = math.ceil(total / PREPARE_BATCH)
    logger.info("preparing %s from %s: %d candidates", out, config.source, total)
    return Plan(config, out, digest, str(work), False, batches)


def _write_json(path: Path, obj: Any) -> None:
    storage.write_bytes(str(path), json.dumps(obj).encode())  # atomic


def _read_json(path: Path) -> Any:
    return json.loads(path.read_bytes())


def _batch(plan: Plan, index: int) -> list[dict[str, Any]]:
    return list(_read_json(Path(plan.work) / "candidates" / f"{index:05d}.json"))


def fetch_batch(plan: Plan, index: int, progress: Progress | None = None) -> dict[str, int]:
    """Download what batch `index` needs (COCO); counts of downloaded / cached / failed."""
    return _sourcing.fetch_batch(plan.config, _batch(plan, index), Path(plan.work) / "fetch",
                                 index, progress)


def convert_batch(plan: Plan, index: int) -> list[dict[str, Any]]:
    """Decode, filter and encode batch `index`; its outcomes (without bytes), staged."""
    folder = Path(plan.work) / f"batch-{index:05d}"
    results = folder / "results.json"
    if results.exists():  # done before an interruption
        return list(_read_json(results))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    batch = _batch(plan, index)
    outcomes = _sourcing.convert_batch(plan.config, batch, Path(plan.work) / "fetch", index,
                                       stage=folder)
    summaries = []
    for candidate, outcome in zip(batch, outcomes, strict=True):
        summary = outcome.summary()
        if "coco_id" in candidate:
            summary.update(coco_id=candidate["coco_id"], objects=candidate["objects"])
        if outcome.staged is not None:  # the worker wrote it: file, offset, length
            name, offset, length = outcome.staged
            summary["file"], summary["offset"], summary["length"] = (
                f"{folder.name}/{name}", offset, length)
        summaries.append(summary)
    _write_json(results, summaries)
    return summaries


def batches_to_run(plan: Plan, results: list[list[dict[str, Any]]]) -> list[int]:
    """Indices of the next batches to process, given those done (in order); [] when the
    sample is complete or the candidates ran out. Estimates from the clean rate so far."""
    if plan.done:
        return []
    kept = sum(1 for batch in results for r in batch if r["reason"] is None)
    missing = plan.config.sample_size - kept
    start = len(results)
    if missing <= 0 or start >= plan.batches:
        return []
    seen = sum(len(batch) for batch in results)
    rate = kept / seen if seen and kept else 0.5
    wanted = math.ceil(missing / max(rate, 0.05) * 1.05 / PREPARE_BATCH)
    return list(range(start, min(plan.batches, start + max(1, wanted))))


def select_sample(plan: Plan, results: list[list[dict[str, Any]]]) -> dict[str, int]:
    """Cut the walk at `sample_size` kept photos, split it, and stage the selection."""
    considered, kept = [], []
    for outcome in (r for batch in results for r in batch):
        considered.append(outcome)
        if outcome["reason"] is None:
            kept.append(outcome)
            if len(kept) == plan.config.sample_size:
                break
    n_val = round(plan.config.val_fraction * len(kept))
    if len(kept) < 2 or not 0 < n_val < len(kept):
        raise ValueError(f"{plan.config.source}: only {len(kept)} usable photos among "
                         f"{len(considered)}; need at least 2 for a train/val split")
    splits = {"train": kept[n_val:], "val": kept[:n_val]}
    _write_json(Path(plan.work) / "selection.json", {"considered": considered, "splits": splits})
    return {name: shard_count(len(items), plan.config.shard_size)
            for name, items in splits.items()}


def write_shard(plan: Plan, split: str, index: int) -> dict[str, Any]:
    """Write shard `index` of `split` from the staged samples; its manifest entry."""
    items = _read_json(Path(plan.work) / "selection.json")["splits"][split]
    count = shard_count(len(items), plan.config.shard_size)
    start, stop = index * len(items) // count, (index + 1) * len(items) // count
    buffer = io.BytesIO()
    writer = _sourcing.deterministic_tar(buffer)
    staged: dict[str, bytes] = {}  # chunk files, each read once (consecutive items share)
    for position in range(start, stop):
        item = items[position]
        if item["file"] not in staged:
            staged = {item["file"]: (Path(plan.work) / item["file"]).read_bytes()}
        sample = staged[item["file"]][item["offset"]:item["offset"] + item["length"]]
        writer.write({"__key__": f"{split}{position:07d}", SAMPLE_MEMBER: sample,
                      "json": json.dumps({"id": item["id"]}).encode()})
    writer.close()
    data = buffer.getvalue()
    name = f"{split}/shard-{index:05d}.tar"
    storage.write_bytes(storage.join(plan.out, name), data)
    return {"name": name, "count": stop - start, "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}


def write_manifest(plan: Plan, shards: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Write the manifest (last: it completes the snapshot), drop the staged work; returns
    the manifest."""
    selection = _read_json(Path(plan.work) / "selection.json")
    extra = _read_json(Path(plan.work) / "source.json")
    dropped = [{k: r[k] for k in ("id", "reason", "detail", "scores")}
               for r in selection["considered"] if r["reason"] is not None]
    splits: dict[str, dict[str, Any]] = {name: {"count": len(selection["splits"][name]),
                     "ids": [r["id"] for r in selection["splits"][name]],
                     "shards": shards[name]} for name in SPLITS}
    total = sum(s["bytes"] for name in SPLITS for s in shards[name])
    kept = splits["train"]["count"] + splits["val"]["count"]
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "sample": {"member": SAMPLE_MEMBER, "encoding": SAMPLE_ENCODING},
        "options": plan.config.defining_options(), "source": plan.config.source,
        "inputs_digest": plan.digest, "code_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "exclusions": extra["exclusions"], "splits": splits, "dropped": dropped,
        "scores": {r["id"]: r["scores"] for name in SPLITS for r in selection["splits"][name]},
        "counts": {"considered": len(selection["considered"]), "kept": kept,
                   "train": splits["train"]["count"], "val": splits["val"]["count"],
                   "dropped": {reason: sum(1 for d in dropped if d["reason"] == reason)
                               for reason in DROP_REASONS}},
        "bytes": {"total": total, "per_sample": round(total / max(kept, 1))},
    }
    if extra.get("coco"):
        considered = selection["considered"]
        manifest["coco"] = {**extra["coco"],
                            "image_ids": {r["id"]: r["coco_id"] for r in considered},
                            "objects": {r["id"]: r["objects"] for r in considered}}
    storage.write_json(storage.join(plan.out, MANIFEST_NAME), manifest)
    shutil.rmtree(plan.work, ignore_errors=True)
    return manifest


def prepare_dataset(config: PrepareConfig, *, progress: Progress | None = None) -> str:
    """Build (or find) the snapshot of `config`; returns its URL. Idempotent; resumes."""
    plan = plan_snapshot(config)
    if plan.done:
        return plan.out
    results: list[list[dict[str, Any]]] = []
    fetched = 0  # photos through the download phase in earlier batches: one running bar

    def fetch_progress(phase: str, done: int, total: int) -> None:
        if progress:
            progress(phase, fetched + done, fetched + total)

    while todo := batches_to_run(plan, results):
        for index in todo:
            fetched += sum(fetch_batch(plan, index, fetch_progress).values())
            results.append(convert_batch(plan, index))
            if progress:
                done = sum(len(b) for b in results)
                progress("convert", done, done + (plan.batches - len(results)) *
                         PREPARE_BATCH)
    counts = select_sample(plan, results)
    shards: dict[str, list[dict[str, Any]]] = {}
    total, done = sum(counts.values()), 0
    # Threads: each shard waits mostly on its write and fsync, which release the GIL.
    with ThreadPoolExecutor(SHARD_WRITE_THREADS) as pool:
        futures = {split: [pool.submit(write_shard, plan, split, index)
                           for index in range(count)] for split, count in counts.items()}
        for split, pending in futures.items():
            shards[split] = []
            for future in pending:
                shards[split].append(future.result())
                done += 1
                if progress:
                    progress("shards", done, total)
    manifest = write_manifest(plan, shards)
    logger.info("snapshot %s: %d train / %d val, %d dropped, %.1f KB per sample", plan.out,
                manifest["counts"]["train"], manifest["counts"]["val"],
                len(manifest["dropped"]), manifest["bytes"]["per_sample"] / 1000)
    return plan.out


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
    """A decoded `lab.npy` (format_version 1) -> float32 tensor [3, S, S]."""
    return torch.from_numpy(np.asarray(sample_lab, dtype=np.float32))


def sample_lab(sample: dict[str, Any]) -> torch.Tensor:
    """A raw WebDataset sample of any format_version -> Lab float32 tensor [3, S, S]."""
    from colorization.samples import sample_lab as decode

    return torch.from_numpy(decode(sample))


def summary_markdown(dataset: str, manifest: dict[str, Any]) -> str:
    """A short Markdown report of a snapshot: counts, drops by reason, bytes."""
    counts = manifest["counts"]
    rows = "\n".join(f"| {reason} | {n} |" for reason, n in counts["dropped"].items() if n)
    return (f"# Dataset snapshot\n\n`{dataset}` from `{manifest['source']}`\n\n"
            f"| split | photos | shards |\n|---|---|---|\n"
            + "".join(f"| {name} | {manifest['splits'][name]['count']} | "
                      f"{len(manifest['splits'][name]['shards'])} |\n" for name in SPLITS)
            + f"\n{counts['considered']} photos considered, {counts['kept']} kept.\n\n"
            f"| dropped because | photos |\n|---|---|\n{rows or '| (none) | 0 |'}\n\n"
            f"Shards: {manifest['bytes']['total'] / 1e6:.1f} MB, "
            f"{manifest['bytes']['per_sample'] / 1e3:.1f} KB per sample.\n")

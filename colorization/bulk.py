"""A prefix in, a prefix out: colorize an archive exactly once, failures recorded.

`plan_bucket` lists the input prefix (paginated, sizes and ETags from the listing itself)
and leaves out what the output manifest records as done for the same source version and
model, and files already known to be bad; `run_chunk` colorizes a list of inputs with the
shared engine (`colorization.inference.run_jobs`), writing each output atomically and
appending one manifest record per input as it ends; `colorize_bucket` is the two together.
Inputs are only read: never modified, moved or deleted.

Exactly once: an output is written whole before its record, so after a SIGKILL the rerun
redoes only inputs without a done record, overwriting (atomically) any output the killed
run wrote but had not yet recorded: one output and one done record per input in the end.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from colorization import bulk_manifest, storage, versions
from colorization.bulk_manifest import DONE, FAILED, Journal, Record
from colorization.constants import (
    BULK_IMAGE_SUFFIXES,
    BULK_MANIFEST_DIR,
    CARD_NAME,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_INFERENCE_BATCH,
    DEFAULT_INFERENCE_PRECISION,
    DEFAULT_IO_WORKERS,
    MAX_INPUT_PIXELS,
    OUTPUT_JPEG_QUALITY,
)
from colorization.inference import Colorizer, EngineConfig, Job, Outcome, output_name, run_jobs

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BulkConfig:
    """Options of a bulk run (all plain values, so flows can pass it to remote workers)."""

    batch_size: int = DEFAULT_INFERENCE_BATCH
    workers: int = DEFAULT_IO_WORKERS
    device: str = DEFAULT_DEVICE
    precision: str = DEFAULT_INFERENCE_PRECISION
    render_size: int | None = None  # None: the model's training size
    output_format: str | None = None  # None: each output keeps its input's format
    jpeg_quality: int = OUTPUT_JPEG_QUALITY
    max_pixels: int = MAX_INPUT_PIXELS
    chunk_size: int = DEFAULT_CHUNK_SIZE
    retry_failed: bool = False  # also retry inputs recorded as bad (same version and model)

    def engine(self) -> EngineConfig:
        return EngineConfig(batch_size=self.batch_size, workers=self.workers,
                            jpeg_quality=self.jpeg_quality, max_pixels=self.max_pixels)


@dataclass(frozen=True)
class Item:
    """One input to do: its key under the input prefix and the version it was listed at."""

    key: str
    size: int
    version: str


@dataclass
class Plan:
    """What a run over `source` will do, and what it leaves alone."""

    source: str
    destination: str
    model_url: str
    model_id: str
    todo: list[Item] = field(default_factory=list)
    already_done: int = 0
    known_failed: dict[str, str] = field(default_factory=dict)  # key -> recorded reason
    ignored: list[str] = field(default_factory=list)  # keys without an image suffix

    def chunks(self, size: int) -> list[list[Item]]:
        return [self.todo[i:i + size] for i in range(0, len(self.todo), size)]


@dataclass
class ChunkReport:
    """What `run_chunk` did: keys done, keys failed with reasons."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class BulkReport:
    """What `colorize_bucket` did. `ok` only when no listed input is failed (now or before)."""

    model_id: str
    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    failed_before: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and not self.failed_before


def new_run_id() -> str:
    """Sortable, unique: `<UTC time to the microsecond>-<random>`."""
    return f"{bulk_manifest.now().replace(':', '').replace('.', '-')}-{secrets.token_hex(3)}"


def resolve_model(model: str | None, *, models_root: str | None = None) -> tuple[str, str]:
    """(version URL, model id) of a model id, a version folder, or None for the champion."""
    url = versions.resolve(model, models_root=models_root)
    return url, storage.read_json(storage.join(url, CARD_NAME))["model_id"]


def plan_bucket(source: str, destination: str, *, model: str | None = None,
                models_root: str | None = None, config: BulkConfig | None = None) -> Plan:
    """List `source` and decide, from the manifest under `destination`, what is left to do.

    Raises FileNotFoundError naming `source` when it does not exist, and when no model is
    given and none is promoted.
    """
    config = config or BulkConfig()
    if source.rstrip("/") == destination.rstrip("/"):
        raise ValueError(f"{destination}: the output prefix must differ from the input "
                         "prefix (inputs are never overwritten)")
    model_url, model_id = resolve_model(model, models_root=models_root)
    plan = Plan(source, destination, model_url, model_id)
    removed = storage.remove_stale_temp_files(destination)
    if removed:
        logger.info("removed %d temp files left by an interrupted run in %s", removed,
                    destination)
    records = bulk_manifest.latest(bulk_manifest.read_records(destination))
    skip_under = _nested_prefix(source, destination)
    for info in storage.list_infos(source):
        key = storage.relative_key(info.url, source)
        if skip_under is not None and (key + "/").startswith(skip_under):
            continue  # the output prefix (and its manifest) inside the input prefix
        if not key.lower().endswith(BULK_IMAGE_SUFFIXES):
            plan.ignored.append(key)
            continue
        record = records.get(key)
        same = record is not None and record.matches(size=info.size, version=info.version,
                                                     model=model_id)
        if same and record is not None and record.status == DONE:
            plan.already_done += 1
        elif (same and record is not None and record.status == FAILED and record.bad_input
              and not config.retry_failed):
            plan.known_failed[key] = record.error or "failed"
        else:
            plan.todo.append(Item(key, info.size, info.version))
    logger.info("%s: %d to do, %d done before, %d known bad, %d ignored (not images)",
                source, len(plan.todo), plan.already_done, len(plan.known_failed),
                len(plan.ignored))
    return plan


def _nested_prefix(source: str, destination: str) -> str | None:
    """`destination` relative to `source` + '/', when it lies inside it."""
    try:
        return storage.relative_key(storage.join(destination, BULK_MANIFEST_DIR),
                                    source)[: -len(BULK_MANIFEST_DIR)]
    except ValueError:
        return None


_colorizers: dict[tuple[str, str, str, int | None], Colorizer] = {}
_colorizers_lock = threading.Lock()


def _colorizer(model_url: str, config: BulkConfig) -> Colorizer:
    """One loaded model per process and settings, shared by the chunks a worker runs."""
    key = (model_url, config.device, config.precision, config.render_size)
    with _colorizers_lock:
        if key not in _colorizers:
            _colorizers[key] = Colorizer.load(model_url, device=config.device,
                                              precision=config.precision,
                                              render_size=config.render_size)
        return _colorizers[key]


def run_chunk(source: str, destination: str, items: list[Item], *, model_url: str,
              config: BulkConfig | None = None, run_id: str | None = None,
              on_outcome: Callable[[Outcome], None] | None = None) -> ChunkReport:
    """Colorize `items` from `source` into `destination`, one manifest record each.

    Idempotent: a retried chunk redoes its inputs and records them again (the latest
    record wins), so task retries are safe.
    """
    config = config or BulkConfig()
    started = time.monotonic()
    report = ChunkReport()
    if not items:
        return report
    run_id = run_id or new_run_id()
    colorizer = _colorizer(model_url, config)
    by_job = {Job(storage.join(source, item.key),
                  storage.join(destination, output_name(item.key, config.output_format))): item
              for item in items}
    journal = Journal(destination, run_id)

    def record(outcome: Outcome) -> None:
        item = by_job[outcome.job]
        journal.append(Record(
            key=item.key, size=item.size, version=item.version,
            output=output_name(item.key, config.output_format), model=colorizer.model_id,
            status=DONE if outcome.error is None else FAILED, error=outcome.error,
            bad_input=outcome.bad_input, seconds=outcome.seconds, run=run_id,
            at=bulk_manifest.now()))
        if outcome.error is None:
            report.done.append(item.key)
        else:
            report.failed[item.key] = outcome.error
        if on_outcome is not None:
            on_outcome(outcome)

    try:
        run_jobs(list(by_job), colorizer, config=config.engine(), on_outcome=record)
    finally:
        journal.close()
    report.seconds = round(time.monotonic() - started, 3)
    return report


def colorize_bucket(source: str, destination: str, *, model: str | None = None,
                    models_root: str | None = None, config: BulkConfig | None = None,
                    on_plan: Callable[[Plan], None] | None = None,
                    on_outcome: Callable[[Outcome], None] | None = None) -> BulkReport:
    """Colorize every image under `source` not yet done into `destination` (see module)."""
    config = config or BulkConfig()
    started = time.monotonic()
    plan = plan_bucket(source, destination, model=model, models_root=models_root,
                       config=config)
    if on_plan is not None:
        on_plan(plan)
    report = BulkReport(model_id=plan.model_id, skipped=plan.already_done,
                        failed_before=dict(plan.known_failed), ignored=plan.ignored)
    run_id = new_run_id()
    for index, chunk in enumerate(plan.chunks(config.chunk_size)):
        result = run_chunk(source, destination, chunk, model_url=plan.model_url,
                           config=config, run_id=f"{run_id}-{index:05d}", on_outcome=on_outcome)
        report.done += len(result.done)
        report.failed.update(result.failed)
    report.seconds = round(time.monotonic() - started, 3)
    return report

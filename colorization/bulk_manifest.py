"""The output manifest of a bulk run: what was done to which version of which input.

Layout under the output prefix Q (DESIGN.md "Bulk output"):

    Q/_manifest/<run>.jsonl          one JSON record per line, one file per run (or chunk)
    Q/_manifest/<run>/<seq>.json     S3 only: the records of a run still going, or killed

A record: key (relative to the input prefix), size and version (ETag or mtime_ns) of the
source, output key, model id, status ("done" or "failed"), error, bad_input, seconds, run,
at. Records are appended one per input as it ends, so a SIGKILL loses only work in flight:
locally each line is flushed to the file as it is written (fsync per chunk of lines); S3
has no append, so each record is its own small object and a run that ends seals them into
one .jsonl object, then deletes the loose ones. Readers take both forms and tolerate a
torn last line; the latest record of a key wins. Journals are never rewritten in place.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import IO, Any

from colorization import storage
from colorization.constants import BULK_MANIFEST_DIR, READ_THREADS

logger = logging.getLogger(__name__)

DONE, FAILED = "done", "failed"
_FSYNC_EVERY = 64  # local lines per fsync: a SIGKILL loses nothing flushed; power loss, few


@dataclass(frozen=True)
class Record:
    """The fate of one version of one input under one model."""

    key: str
    size: int
    version: str
    output: str
    model: str
    status: str
    error: str | None
    bad_input: bool
    seconds: float
    run: str
    at: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})

    def matches(self, *, size: int, version: str, model: str) -> bool:
        """Whether this record is about that exact source version and model."""
        return (self.size, self.version, self.model) == (size, version, model)


def manifest_prefix(destination: str) -> str:
    """Where the manifest of an output prefix lives."""
    return storage.join(destination, BULK_MANIFEST_DIR)


def now() -> str:
    """UTC time to the microsecond: orders the records of runs that follow each other fast."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_records(destination: str) -> list[Record]:
    """Every record under the output prefix, journal by journal, in append order."""
    prefix = manifest_prefix(destination)
    try:
        urls = storage.list_files(prefix)
    except FileNotFoundError:
        return []
    journals = [u for u in urls if u.endswith(".jsonl")]
    loose = [u for u in urls if u.endswith(".json")]
    records = [r for url in journals for r in _parse_lines(url, storage.read_text(url))]
    with ThreadPoolExecutor(READ_THREADS) as pool:  # S3: one GET per loose record
        for url, data in zip(loose, pool.map(_read_loose, loose), strict=True):
            if data is not None:
                records.append(_parse(url, data))
    return records


def _read_loose(url: str) -> Any:
    try:
        return storage.read_json(url)
    except FileNotFoundError:  # sealed and deleted by its run between our list and read
        return None


def _parse_lines(url: str, text: str) -> list[Record]:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(_parse(url, json.loads(line)))
        except (json.JSONDecodeError, ValueError):  # a line torn by a kill: its work redoes
            logger.warning("%s:%d: skipping an unreadable manifest line", url, number)
    return records


def _parse(url: str, data: Any) -> Record:
    try:
        return Record.from_dict(data)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{url}: not a manifest record ({exc})") from exc


def latest(records: list[Record]) -> dict[str, Record]:
    """The newest record of each key ('at', then append order, decides)."""
    newest: dict[str, Record] = {}
    for record in records:
        if record.key not in newest or record.at >= newest[record.key].at:
            newest[record.key] = record
    return newest


class Journal:
    """Appends the records of one run (or one chunk of a run) under an output prefix."""

    def __init__(self, destination: str, run_id: str):
        if "/" in run_id or not run_id:
            raise ValueError(f"run id {run_id!r} must be a non-empty name without '/'")
        self.url = storage.join(manifest_prefix(destination), f"{run_id}.jsonl")
        self.loose_dir = self.url[: -len(".jsonl")]  # S3: <run>/<seq>.json until sealed
        self.remote = storage.is_remote(destination)
        self._records: list[Record] = []
        self._file: IO[str] | None = None

    def append(self, record: Record) -> None:
        line = json.dumps(asdict(record), ensure_ascii=False)
        if self.remote:
            storage.write_text(storage.join(self.loose_dir, f"{len(self._records):08d}.json"),
                               line)
        else:
            if self._file is None:
                path = storage.local_path(self.url)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close
            self._file.write(line + "\n")
            self._file.flush()  # in the kernel now: survives a SIGKILL of this process
            if len(self._records) % _FSYNC_EVERY == _FSYNC_EVERY - 1:
                os.fsync(self._file.fileno())
        self._records.append(record)

    def close(self) -> None:
        """Local: fsync and close. S3: seal the loose records into one object, then delete
        them (a reader sees each record at least once at every moment; `latest` dedups)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        elif self.remote and self._records:
            storage.write_text(self.url, "".join(
                json.dumps(asdict(r), ensure_ascii=False) + "\n" for r in self._records))
            with ThreadPoolExecutor(READ_THREADS) as pool:
                list(pool.map(storage.delete, (storage.join(self.loose_dir, f"{i:08d}.json")
                                               for i in range(len(self._records)))))

"""COCO 2017 as a source: `coco://<split>`, its annotations, mirrors and verified downloads.

A mirror is an HTTP(S) base URL, an s3:// prefix or a local folder holding the official
layout: `annotations/instances_<split>.json` (or else the published
`annotations/annotations_trainval2017.zip`, of which only the needed member is read) and
`<split>/<file_name>`. The mirror replaces the host part of each image's `coco_url`.
Downloads land in `<storage root>/raw/coco/<split>/<file_name>` and are kept: a file is
written there only after it fully decoded at the annotated size, so a rerun fetches
nothing it already has and an interrupted download starts that one file over.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image
from pycocotools.coco import COCO

from colorization import paths, storage
from colorization.constants import (
    COCO_ANNOTATIONS_ZIP,
    COCO_MIRROR_ENV,
    COCO_OFFICIAL_MIRROR,
    COCO_SCHEME,
    DOWNLOAD_ATTEMPTS,
    DOWNLOAD_BACKOFF_S,
    DOWNLOAD_THREADS,
    RAW_DIR,
)
from colorization.samples import Dropped

logger = logging.getLogger(__name__)

_UNREACHABLE = "unreachable"  # a fetch failure of the mirror, not of the photo
_SPLIT_NAME = re.compile(r"^[a-z]+20\d\d$")  # train2017, val2017, test2017 ...


@dataclass(frozen=True)
class CocoPhoto:
    """One image of a split: `id` is its file name, the key a folder source would give."""

    id: str
    image_id: int
    url: str  # on the mirror
    width: int
    height: int


def is_coco(source: str) -> bool:
    """Whether `source` names a COCO split (`coco://<split>`)."""
    return source.lower().startswith(COCO_SCHEME)


def split_of(source: str) -> str:
    """`coco://val2017` -> "val2017"; ValueError names a malformed source."""
    split = source[len(COCO_SCHEME):].strip("/")
    if not _SPLIT_NAME.match(split):
        raise ValueError(f"{source}: expected coco://<split>, e.g. coco://train2017")
    return split


def mirror_url(mirror: str | None = None) -> str:
    """The mirror to read from: `mirror`, else $COLORIZATION_COCO_MIRROR, else COCO's host."""
    chosen = (mirror or os.environ.get(COCO_MIRROR_ENV, "").strip() or COCO_OFFICIAL_MIRROR)
    if "://" not in chosen:
        chosen = os.path.abspath(os.path.expanduser(chosen))
    return chosen.rstrip("/")


def raw_root(split: str) -> str:
    """Where downloaded photos of `split` are kept: <home>/raw/coco/<split>."""
    return storage.join(paths.home(), RAW_DIR, "coco", split)


def load_annotations(split: str, *, mirror: str) -> tuple[COCO, str]:
    """The split's annotations as a pycocotools `COCO`, and the URL they came from.

    Read from the mirror once and cached under <home>/raw/coco/annotations/.
    """
    name = f"instances_{split}.json"
    cache = storage.join(paths.home(), RAW_DIR, "coco", "annotations", name)
    origin_url = cache + ".origin"
    if storage.exists(cache) and storage.exists(origin_url):
        data, origin = storage.read_bytes(cache), storage.read_text(origin_url).strip()
    else:
        data, origin = _fetch_annotations(split, mirror=mirror)
        storage.write_bytes(cache, data)
        storage.write_text(origin_url, origin + "\n")
    try:
        dataset = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{origin}: not a COCO annotation file ({exc})") from exc
    if not isinstance(dataset, dict) or "images" not in dataset:
        raise ValueError(f"{origin}: not a COCO annotation file (no 'images')")
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco, origin


def _fetch_annotations(split: str, *, mirror: str) -> tuple[bytes, str]:
    member = f"annotations/instances_{split}.json"
    url = storage.join(mirror, member)
    try:
        return storage.read_bytes(url), url
    except FileNotFoundError:
        zip_url = storage.join(mirror, COCO_ANNOTATIONS_ZIP)
        logger.info("%s not found; reading %s from %s", url, member, zip_url)
    with tempfile.TemporaryDirectory(prefix="coco-") as tmp:
        try:
            local = storage.download(zip_url, Path(tmp) / "annotations.zip")
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{mirror}: neither {member} nor {COCO_ANNOTATIONS_ZIP} "
                                    "found; is it a COCO mirror?") from exc
        try:
            with zipfile.ZipFile(local) as bundle:
                return bundle.read(member), f"{zip_url}#{member}"  # only this member
        except KeyError as exc:
            raise ValueError(f"{zip_url}: has no {member}") from exc
        except zipfile.BadZipFile as exc:
            raise ValueError(f"{zip_url}: not a zip file ({exc})") from exc


def photos(coco: COCO, *, split: str, mirror: str) -> list[CocoPhoto]:
    """Every image of the split with its mirror URL, in file-name order."""
    result = []
    for image in coco.imgs.values():
        name = image["file_name"]
        path = urlsplit(image["coco_url"]).path if image.get("coco_url") else f"{split}/{name}"
        result.append(CocoPhoto(id=name, image_id=int(image["id"]), url=storage.join(mirror, path),
                                width=int(image["width"]), height=int(image["height"])))
    return sorted(result, key=lambda photo: photo.id)


def objects(coco: COCO, image_id: int) -> list[dict[str, Any]]:
    """Categories and boxes [x, y, w, h] of one image, for curation and review."""
    names = {c["id"]: c["name"] for c in coco.cats.values()}
    return [{"category": names.get(a["category_id"], str(a["category_id"])),
             "bbox": [round(float(v), 2) for v in a["bbox"]]}
            for a in coco.imgToAnns.get(image_id, [])]


def verify_photo(data: bytes, *, name: str, size: tuple[int, int]) -> None:
    """`Dropped` (unreadable or size_mismatch) unless `data` decodes fully (every scan
    read) at exactly `size`."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.size != tuple(size):
                raise Dropped("size_mismatch", f"{name}: {img.size[0]}x{img.size[1]}, "
                              f"annotation says {size[0]}x{size[1]}")
            if img.format == "JPEG":
                img.draft(img.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
            img.load()  # draft still reads all entropy-coded data: truncation is caught
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise Dropped("unreadable", f"{name}: does not decode ({exc})") from exc


@dataclass
class FetchReport:
    """What `fetch` did: photo ids downloaded now, already kept, and those that stayed bad."""

    downloaded: list[str]
    cached: list[str]
    failed: dict[str, tuple[str, str]]  # id -> (drop reason, detail)


def fetch(items: Sequence[CocoPhoto], *, dest: str, threads: int = DOWNLOAD_THREADS,
          on_done: Callable[[int], None] | None = None) -> FetchReport:
    """Download and verify the photos missing under `dest`, in parallel threads.

    Each photo gets DOWNLOAD_ATTEMPTS tries with exponential backoff; one that stays bad
    is reported in `failed` (id -> reason) and nothing is written for it.
    """
    report = FetchReport([], [], {})

    def one(photo: CocoPhoto) -> tuple[str, tuple[str, str] | None]:
        target = storage.join(dest, photo.id)
        if storage.exists(target):
            return "cached", None
        delay, reason, error = DOWNLOAD_BACKOFF_S, "unreadable", ""
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                data = storage.read_bytes(photo.url)
                verify_photo(data, name=photo.url, size=(photo.width, photo.height))
            except (OSError, ValueError) as exc:
                reason = exc.reason if isinstance(exc, Dropped) else "unreadable"
                if isinstance(exc, storage.StorageError):  # unreachable, 5xx, denied
                    reason = _UNREACHABLE
                error = str(exc)
                logger.warning("attempt %d/%d: %s", attempt, DOWNLOAD_ATTEMPTS, error)
                if attempt < DOWNLOAD_ATTEMPTS:
                    time.sleep(delay)
                    delay *= 2
                continue
            storage.write_bytes(target, data)  # atomic: a partial file is never kept
            return "downloaded", None
        return "failed", (reason, f"bad after {DOWNLOAD_ATTEMPTS} downloads: {error}")

    with ThreadPoolExecutor(max(1, threads)) as pool:
        for photo, (status, error) in zip(items, pool.map(one, items), strict=True):
            if status == "failed":
                report.failed[photo.id] = error or ("unreadable", "")
            else:
                getattr(report, status).append(photo.id)
            if on_done:
                on_done(1)
    unreachable = [d for r, d in report.failed.values() if r == _UNREACHABLE]
    if unreachable and not report.downloaded and len(unreachable) == len(report.failed):
        # Nothing came through and the mirror itself failed: stop rather than walk the
        # whole split retrying; a rerun resumes with what is already kept.
        raise storage.StorageError(f"the COCO mirror failed for every photo of a batch "
                                   f"({len(unreachable)}); first: {unreachable[0]}")
    report.failed = {k: ("unreadable" if r == _UNREACHABLE else r, d)
                     for k, (r, d) in report.failed.items()}
    return report

"""The curation dataset of a snapshot: every photo it considered, kept or dropped.

`colorization-data-<snapshot id>` has one sample per considered photo (the source file),
with `photo_id`, `kept`, `split` (kept photos) or `drop_reason`, the filters' scores
`mean_chroma` and `hue_spread`, `sha256` and a `duplicate` tag on exact copies, and, when
the source is COCO, `categories` and `ground_truth` boxes (the objects prepare recorded in
the manifest). It reads format-1 manifests (`splits.<name>.ids`, `skipped`) and the newer
fields when present (`dropped`, `scores`, `coco`); scores missing from the manifest are
computed from the photo.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image

from colorization import coco as coco_source
from colorization import paths, storage
from colorization.constants import (
    DEFAULT_IMAGE_SIZE,
    EXCLUDE_TAG,
    READ_THREADS,
    REVIEW_DATA_PREFIX,
)
from colorization.review import _excluded, _fo, load, local_media
from colorization.samples import crop_scores, decode_crop
from colorization.shards import read_manifest

logger = logging.getLogger(__name__)

DUPLICATE_TAG = "duplicate"


def snapshot_id(manifest: dict[str, Any]) -> str:
    """The snapshot's id: the first 12 hex digits of its inputs digest (its default folder)."""
    return str(manifest["inputs_digest"])[:12]


def snapshot_dataset_name(snapshot: str) -> str:
    return f"{REVIEW_DATA_PREFIX}{snapshot_id(read_manifest(snapshot))}"


def considered(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per photo the snapshot considered: id, split or reason, scores if known."""
    scores = manifest.get("scores", {})
    photos = [{"id": photo, "split": name, "reason": None, "scores": scores.get(photo)}
              for name, split in manifest["splits"].items() for photo in split["ids"]]
    dropped = manifest.get("dropped", manifest.get("skipped", []))
    photos += [{"id": entry["id"], "split": None, "reason": entry.get("reason"),
                "detail": entry.get("detail", ""), "scores": entry.get("scores")}
               for entry in dropped]
    return photos


def photo_scores(data: bytes, *, name: str, image_size: int) -> dict[str, float]:
    """The filters' scores of one photo, as prepare computes them (mean chroma, hue spread)."""
    return crop_scores(decode_crop(data, name=name, image_size=image_size))


def _coco_boxes(objects: list[dict[str, Any]], data: bytes
                ) -> list[tuple[str, list[float]]] | None:
    """(label, [x, y, w, h] relative) of the COCO objects prepare recorded in the manifest
    for one photo (no second pass over the annotation file, ~450 MB for train2017); None
    when the photo's header cannot be read for its size."""
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = (float(v) for v in header.size)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return [(o["category"], [o["bbox"][0] / width, o["bbox"][1] / height,
                             o["bbox"][2] / width, o["bbox"][3] / height]) for o in objects]


def build_snapshot_dataset(snapshot: str) -> str:
    """(Re)build `colorization-data-<snapshot id>`; returns its name. `exclude` tags given
    in an earlier build are kept; unreadable photos are kept as samples with `readable`
    False."""
    manifest = read_manifest(snapshot)
    fo = _fo()
    name = f"{REVIEW_DATA_PREFIX}{snapshot_id(manifest)}"
    keep = _excluded(name)
    source = str(manifest["source"]).rstrip("/")
    if coco_source.is_coco(source):  # the photos prepare downloaded, kept under raw/
        source = coco_source.raw_root(coco_source.split_of(source))
    image_size = int(manifest.get("options", {}).get("image_size", DEFAULT_IMAGE_SIZE))
    photos = considered(manifest)
    root = local_media(source) if storage.is_remote(source) else storage.local_path(source)
    coco_objects = (manifest.get("coco") or {}).get("objects", {})

    def read(photo: dict[str, Any]) -> bytes | None:
        try:
            return storage.read_bytes(storage.join(source, photo["id"]))
        except OSError as exc:
            logger.warning("%s: cannot read (%s)", photo["id"], exc)
            return None

    samples: list[Any] = []
    with ThreadPoolExecutor(READ_THREADS) as pool:
        for photo, data in zip(photos, pool.map(read, photos), strict=True):
            sample = fo.Sample(filepath=os.path.join(root, photo["id"]), photo_id=photo["id"],
                               kept=photo["split"] is not None, split=photo["split"],
                               drop_reason=photo["reason"], drop_detail=photo.get("detail"),
                               readable=data is not None)
            scores = photo["scores"]
            if data is not None:
                digest = hashlib.sha256(data).hexdigest()
                sample["sha256"] = digest
                if scores is None:
                    with contextlib.suppress(ValueError):  # unreadable image: no scores
                        scores = photo_scores(data, name=photo["id"], image_size=image_size)
            for key, value in (scores or {}).items():
                sample[key] = float(value)
            boxes = (_coco_boxes(coco_objects[photo["id"]], data)
                     if data is not None and photo["id"] in coco_objects else None)
            if boxes is not None:
                sample["categories"] = sorted({label for label, _ in boxes})
                sample["ground_truth"] = fo.Detections(detections=[
                    fo.Detection(label=label, bounding_box=box) for label, box in boxes])
            if photo["id"] in keep:
                sample.tags.append(EXCLUDE_TAG)
            samples.append(sample)
    _tag_duplicates(samples)
    dataset = fo.Dataset(name, persistent=True, overwrite=True)
    # Declared up front: a field whose values are all None (no drops, no COCO) still exists.
    for field, kind in (("photo_id", fo.StringField), ("split", fo.StringField),
                        ("drop_reason", fo.StringField), ("drop_detail", fo.StringField),
                        ("kept", fo.BooleanField),
                        ("readable", fo.BooleanField), ("sha256", fo.StringField),
                        ("duplicate_of", fo.StringField), ("mean_chroma", fo.FloatField),
                        ("hue_spread", fo.FloatField)):
        dataset.add_sample_field(field, kind)
    dataset.add_sample_field("categories", fo.ListField, subfield=fo.StringField)
    dataset.add_sample_field("ground_truth", fo.EmbeddedDocumentField,
                             embedded_doc_type=fo.Detections)
    dataset.add_samples(samples)
    dataset.info = {"kind": "snapshot", "snapshot": snapshot, "source": source,
                    "storage_root": paths.home()}
    dataset.save()
    logger.info("curation dataset %s: %d photos considered", name, len(samples))
    return name


def _tag_duplicates(samples: list[Any]) -> None:
    """Tag every member of a group of exact copies (same sha256); all but the first id (in
    sorted order) point at it with `duplicate_of`."""
    groups: dict[str, list[Any]] = {}
    for sample in samples:
        if sample.has_field("sha256"):
            groups.setdefault(sample["sha256"], []).append(sample)
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda member: member["photo_id"])
        for member in members:
            member.tags.append(DUPLICATE_TAG)
        for member in members[1:]:
            member["duplicate_of"] = members[0]["photo_id"]


def snapshot_summary(name: str) -> dict[str, Any]:
    """Name, sample count, kept per split, dropped per reason, duplicates, and per photo its
    split or drop reason."""
    dataset = load(name)
    photos = {photo: split or reason for photo, split, reason in zip(
        dataset.values("photo_id"), dataset.values("split"), dataset.values("drop_reason"),
        strict=True)}
    kept: dict[str, int] = {}
    dropped: dict[str, int] = {}
    for split, reason in zip(dataset.values("split"), dataset.values("drop_reason"),
                             strict=True):
        if split:
            kept[split] = kept.get(split, 0) + 1
        else:
            dropped[str(reason)] = dropped.get(str(reason), 0) + 1
    return {"name": name, "samples": len(dataset), "kept": kept, "dropped": dropped,
            "duplicates": len(dataset.match_tags(DUPLICATE_TAG)),
            "exclude": sorted(dataset.match_tags(EXCLUDE_TAG).distinct("photo_id")),
            "photos": photos}

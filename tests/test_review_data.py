"""The curation dataset of a snapshot: every considered photo, today's and the newer manifest."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from colorization import color, storage
from colorization.cli import main
from colorization.constants import MANIFEST_NAME, MIN_HUE_SPREAD
from colorization.review_data import considered, photo_scores
from colorization.samples import decode_crop, filter_scores
from colorization.shards import PrepareConfig, prepare_dataset


@pytest.fixture
def snapshot(fixture_photos, tmp_path):
    """Ten photos, an exact copy of one, a grayscale one and a broken file, prepared at 16 px:
    (snapshot URL, source folder)."""
    source = tmp_path / "photos"
    source.mkdir()
    photos = sorted(fixture_photos.glob("*.jpg"))[:10]
    for photo in photos:
        shutil.copy(photo, source / photo.name)
    shutil.copy(photos[0], source / "copy_of_first.jpg")
    with Image.open(photos[1]) as img:
        img.convert("L").save(source / "gray.jpg")
    (source / "broken.jpg").write_bytes(b"not a jpeg")
    return prepare_dataset(PrepareConfig(source=str(source), image_size=16,
                                         val_fraction=0.25)), source


def test_every_considered_photo_with_its_split_or_reason(fiftyone_env, snapshot, capsys):
    dataset, source = snapshot
    manifest = storage.read_json(storage.join(dataset, MANIFEST_NAME))
    assert main(["review", "--dataset", dataset, "--no-app"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["name"] == f"colorization-data-{manifest['inputs_digest'][:12]}"
    assert summary["samples"] == 13  # every file the snapshot considered, kept or dropped
    kept = {photo: name for name, split in manifest["splits"].items() for photo in split["ids"]}
    assert {p: s for p, s in summary["photos"].items() if p in kept} == kept
    assert summary["photos"]["gray.jpg"].startswith("grayscale")
    assert summary["photos"]["broken.jpg"] == "unreadable"
    assert summary["kept"] == {n: s["count"] for n, s in manifest["splits"].items()}
    assert sum(summary["kept"].values()) == 11 and summary["duplicates"] == 2

    import fiftyone as fo

    samples = {s.photo_id: s for s in fo.load_dataset(summary["name"])}
    first = sorted(kept)[0]
    assert "duplicate" in samples[first].tags and "duplicate" in samples["copy_of_first.jpg"].tags
    assert samples["copy_of_first.jpg"].duplicate_of == first
    assert samples["broken.jpg"].readable is True and samples["broken.jpg"].mean_chroma is None
    assert "not a readable image" in samples["broken.jpg"].drop_detail
    # The scores are prepare's own filter scores of the crop (its Lab, OpenCV's, is within
    # 0.05 of the reference formulas).
    rgb = decode_crop((source / first).read_bytes(), name=first, image_size=16)
    expected = filter_scores(rgb, color.srgb8_to_lab(rgb))["mean_chroma"]
    assert samples[first].mean_chroma == pytest.approx(expected, abs=1e-2)
    assert samples["gray.jpg"].mean_chroma < 3.0 < samples[first].mean_chroma


def test_newer_manifest_fields_scores_drops_and_coco_boxes(fiftyone_env, snapshot, tmp_path):
    dataset, source = snapshot
    manifest = storage.read_json(storage.join(dataset, MANIFEST_NAME))
    val = manifest["splits"]["val"]["ids"]
    with Image.open(source / val[0]) as img:
        width, height = img.size
    # The manifest's own scores are used (here replaced by marked values), and a `coco` block
    # brings categories and boxes.
    newer = dict(manifest)
    newer["dropped"] = [{**entry, "scores": {"mean_chroma": 0.5, "hue_spread": 0.25}}
                        for entry in manifest["dropped"]]
    newer["scores"] = {**manifest["scores"], val[0]: {"mean_chroma": 12.5, "hue_spread": 0.75}}
    # The `coco` block as prepare writes it: objects per photo, boxes in pixels.
    newer["coco"] = {"split": "val2017", "image_ids": {val[0]: 25}, "objects": {val[0]: [
        {"category": "dog", "bbox": [10, 20, 30, 40]},
        {"category": "person", "bbox": [0, 0, width / 2, height]}]}}
    newer["inputs_digest"] = "f" * 64
    copy = tmp_path / "newer-snapshot"
    storage.write_json(storage.join(str(copy), MANIFEST_NAME), newer)
    assert len(considered(newer)) == 13

    from colorization.review_data import build_snapshot_dataset, snapshot_summary

    name = build_snapshot_dataset(str(copy))
    import fiftyone as fo

    samples = {s.photo_id: s for s in fo.load_dataset(name)}
    first = samples[val[0]]
    assert (first.mean_chroma, first.hue_spread) == (12.5, 0.75)  # taken, not recomputed
    assert samples["gray.jpg"].mean_chroma == 0.5 and samples["gray.jpg"].kept is False
    assert first.categories == ["dog", "person"]
    boxes = {d.label: d.bounding_box for d in first.ground_truth.detections}
    assert boxes["dog"] == pytest.approx([10 / width, 20 / height, 30 / width, 40 / height])
    assert boxes["person"] == pytest.approx([0, 0, 0.5, 1])
    # A snapshot that dropped nothing and has no COCO block still summarises.
    clean = {**manifest, "dropped": [], "inputs_digest": "e" * 64}
    storage.write_json(storage.join(str(tmp_path / "clean"), MANIFEST_NAME), clean)
    clean_summary = snapshot_summary(build_snapshot_dataset(str(tmp_path / "clean")))
    assert clean_summary["samples"] == 11 and clean_summary["dropped"] == {}
    other = manifest["splits"]["train"]["ids"][0]
    assert samples[other].ground_truth is None and samples[other].kept  # no COCO id for it


def test_photo_scores_flag_a_single_tint(fixture_photos):
    import io

    # A toned print is gray x tint: every pixel has the tint's chromaticity.
    sepia = Image.new("RGB", (32, 32))
    sepia.putdata([(v, round(v * 0.8), round(v * 0.6)) for v in
                   (40 + (i * 7) % 200 for i in range(32 * 32))])
    buffer = io.BytesIO()
    sepia.save(buffer, format="PNG")
    scores = photo_scores(buffer.getvalue(), name="sepia.png", image_size=16)
    assert scores["mean_chroma"] > 10 and scores["hue_spread"] < MIN_HUE_SPREAD
    photo = sorted(fixture_photos.glob("*.jpg"))[0]
    colourful = photo_scores(photo.read_bytes(), name=photo.name, image_size=16)
    assert colourful["hue_spread"] > 2 * MIN_HUE_SPREAD

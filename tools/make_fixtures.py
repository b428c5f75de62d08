#!/usr/bin/env python3
"""Regenerate the committed test-fixture photos from the shared data directory.

Writes, relative to the repository root:

* ``tests/fixtures/photos/coco_<stem>.jpg`` -- 40 COCO train2017 photos,
  downscaled with Lanczos so the long side is exactly 256 px (aspect ratio
  kept, never upscaled), saved as RGB JPEG quality 90 without EXIF/ICC data;
* ``tests/fixtures/photos.csv`` -- one row per photo with its licence and
  Flickr URL (machine-readable);
* ``tests/fixtures/ATTRIBUTION.md`` -- the same information for humans.

Selection (deterministic): only images that are both on disk in
``coco128/train2017`` and listed in the COCO JSON are eligible. Licences are
taken in preference order 4 (CC BY), 5 (CC BY-SA), 7 (no known copyright),
8 (US government), then 2 (CC BY-NC), then 1 (CC BY-NC-SA); within a licence
images are taken in file-name order. No-derivatives licences (3, 6) are never
used, since the fixtures are modified (downscaled) copies. Images whose mean
CIELAB chroma is below ``MIN_MEAN_CHROMA`` are skipped as not colourful
enough for colourisation tests.

Usage::

    python tools/make_fixtures.py [SHARED_DATA_DIR]

``SHARED_DATA_DIR`` defaults to ``../shared/data`` relative to the repository
root. Only the standard library, Pillow and numpy are needed.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT / ".." / "shared" / "data"

N_PHOTOS = 40
LONG_SIDE = 256
JPEG_QUALITY = 90
MIN_MEAN_CHROMA = 5.0
"""Mean CIELAB chroma (sqrt(a*a + b*b)) below which a photo counts as too grey."""

# Licence ids in order of preference; ND licences 3 and 6 are deliberately absent.
LICENSE_PREFERENCE: tuple[tuple[int, ...], ...] = ((4, 5, 7, 8), (2,), (1,))
FORBIDDEN_LICENSES = frozenset({3, 6})

CSV_FIELDS = (
    "file",
    "coco_id",
    "license_id",
    "license_name",
    "license_url",
    "flickr_url",
    "orig_width",
    "orig_height",
)


@dataclass(frozen=True)
class Candidate:
    """A COCO image that exists on disk, with its licence metadata."""

    path: Path
    coco_id: int
    license_id: int
    license_name: str
    license_url: str
    flickr_url: str


@dataclass(frozen=True)
class Fixture:
    """A written fixture photo and the metadata recorded for it."""

    file: str
    candidate: Candidate
    orig_width: int
    orig_height: int
    mean_chroma: float


def srgb_to_chroma(rgb: np.ndarray) -> np.ndarray:
    """Return per-pixel CIELAB chroma (D65) of an ``(H, W, 3)`` uint8 sRGB array."""
    c = rgb.astype(np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [
            [0.412453, 0.357580, 0.180423],
            [0.212671, 0.715160, 0.072169],
            [0.019334, 0.119193, 0.950227],
        ]
    )
    xyz = lin @ m.T / np.array([0.950456, 1.0, 1.088754])
    eps = (6.0 / 29.0) ** 3
    f = np.where(xyz > eps, np.cbrt(xyz), xyz / (3 * (6.0 / 29.0) ** 2) + 4.0 / 29.0)
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return np.hypot(a, b)


def target_size(width: int, height: int) -> tuple[int, int]:
    """Size with the long side equal to ``LONG_SIDE``, aspect ratio kept."""
    long_side = max(width, height)
    if long_side < LONG_SIDE:
        raise ValueError(f"refusing to upscale a {width}x{height} image")
    scale = LONG_SIDE / long_side
    if width >= height:
        return LONG_SIDE, max(1, round(height * scale))
    return max(1, round(width * scale)), LONG_SIDE


def load_candidates(data_dir: Path) -> dict[int, list[Candidate]]:
    """Group eligible on-disk COCO images by licence id, sorted by file name."""
    coco = json.loads(
        (data_dir / "coco128" / "annotations" / "panoptic_train2017.json").read_text()
    )
    licenses = {lic["id"]: lic for lic in coco["licenses"]}
    image_dir = data_dir / "coco128" / "train2017"
    by_license: dict[int, list[Candidate]] = {}
    for image in sorted(coco["images"], key=lambda im: im["file_name"]):
        path = image_dir / image["file_name"]
        if not path.is_file():
            continue
        lic = licenses[image["license"]]
        by_license.setdefault(lic["id"], []).append(
            Candidate(
                path=path,
                coco_id=int(image["id"]),
                license_id=int(lic["id"]),
                license_name=str(lic["name"]),
                license_url=str(lic["url"]),
                flickr_url=str(image["flickr_url"]),
            )
        )
    return by_license


def source_commit(data_dir: Path) -> str:
    """The single source commit of the coco128 images, from ``MANIFEST.csv``."""
    with (data_dir / "MANIFEST.csv").open(newline="") as fh:
        commits = {row["source_commit"] for row in csv.DictReader(fh) if row["set"] == "coco128"}
    if len(commits) != 1:
        raise ValueError(f"expected one coco128 source commit, found {sorted(commits)}")
    return commits.pop()


def make_fixture(candidate: Candidate, out_dir: Path) -> Fixture | None:
    """Downscale and write one photo; return ``None`` (nothing written) if too grey."""
    with Image.open(candidate.path) as src:
        rgb = src.convert("RGB")
    small = rgb.resize(target_size(*rgb.size), Image.Resampling.LANCZOS)
    chroma = float(srgb_to_chroma(np.asarray(small)).mean())
    if chroma < MIN_MEAN_CHROMA:
        return None
    name = f"coco_{candidate.path.stem}.jpg"
    # No exif/icc_profile arguments: Pillow then writes neither.
    small.save(out_dir / name, "JPEG", quality=JPEG_QUALITY, optimize=False)
    return Fixture(name, candidate, rgb.width, rgb.height, chroma)


def write_csv(path: Path, fixtures: list[Fixture]) -> None:
    """Write the machine-readable licence table."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CSV_FIELDS)
        for fx in fixtures:
            c = fx.candidate
            writer.writerow(
                [fx.file, c.coco_id, c.license_id, c.license_name, c.license_url,
                 c.flickr_url, fx.orig_width, fx.orig_height]
            )


def write_attribution(path: Path, fixtures: list[Fixture], commit: str) -> None:
    """Write the human-readable attribution file."""
    lines = [
        "# Test fixture photos: attribution",
        "",
        f"The {len(fixtures)} files in `photos/` are downscaled copies (long side {LONG_SIDE} px,",
        f"Lanczos, JPEG quality {JPEG_QUALITY}, metadata stripped) of COCO 2017 train images.",
        "The COCO dataset annotations are licensed CC BY 4.0; each image is under its own",
        "Flickr licence, listed below (some are NonCommercial; none is NoDerivs).",
        "Source: `lightly-ai/coco128_yolo`, `images/train2017`,",
        f"commit `{commit}`.",
        "Generated by `tools/make_fixtures.py`; the same data is in `photos.csv`.",
        "",
        "| file | COCO image id | licence name | licence URL | Flickr URL |",
        "|---|---|---|---|---|",
    ]
    for fx in fixtures:
        c = fx.candidate
        lines.append(
            f"| `{fx.file}` | {c.coco_id} | {c.license_name} | <{c.license_url}> "
            f"| <{c.flickr_url}> |"
        )
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Select, convert and document the fixture photos."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "data_dir", nargs="?", type=Path, default=DEFAULT_DATA_DIR,
        help="shared data directory (default: ../shared/data relative to the repo root)",
    )
    args = parser.parse_args(argv)
    data_dir: Path = args.data_dir.resolve()

    fixtures_dir = REPO_ROOT / "tests" / "fixtures"
    photos_dir = fixtures_dir / "photos"
    photos_dir.mkdir(parents=True, exist_ok=True)
    for stale in photos_dir.glob("*.jpg"):
        stale.unlink()

    by_license = load_candidates(data_dir)
    fixtures: list[Fixture] = []
    for group in LICENSE_PREFERENCE:
        pool = sorted(
            (c for lic in group for c in by_license.get(lic, [])), key=lambda c: c.path.name
        )
        for candidate in pool:
            if len(fixtures) == N_PHOTOS:
                break
            assert candidate.license_id not in FORBIDDEN_LICENSES
            fixture = make_fixture(candidate, photos_dir)
            if fixture is None:
                print(f"skipped {candidate.path.name}: too grey", file=sys.stderr)
                continue
            fixtures.append(fixture)
    if len(fixtures) != N_PHOTOS:
        raise SystemExit(f"only {len(fixtures)} usable photos, need {N_PHOTOS}")

    fixtures.sort(key=lambda fx: fx.file)
    write_csv(fixtures_dir / "photos.csv", fixtures)
    write_attribution(fixtures_dir / "ATTRIBUTION.md", fixtures, source_commit(data_dir))
    for fx in fixtures:
        print(f"{fx.file} licence={fx.candidate.license_id} chroma={fx.mean_chroma:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

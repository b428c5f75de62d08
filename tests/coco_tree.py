"""A small COCO-shaped tree for tests and for trying `colorize prepare coco://` by hand.

`annotations/instances_val2017.json` + `val2017/<12-digit id>.jpg`: colour photos made
from the committed fixtures (as they are, mirrored and upside down), plus grayscale,
sepia, blue-toned, truncated and too-small photos that prepare must drop.

    python tests/coco_tree.py /tmp/coco          # then, in another shell:
    python -m http.server -b 127.0.0.1 -d /tmp/coco 8000
    colorize prepare coco://val2017 --coco-mirror http://127.0.0.1:8000 \\
        --sample-size 100 --image-size 64
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

FIXTURES = Path(__file__).parent / "fixtures" / "photos"
SPLIT = "val2017"
SHORT_SIDE = 80  # small files; >= the 64-px crops the tests prepare


def _colour_variants(count: int) -> list[Image.Image]:
    sources = sorted(FIXTURES.glob("*.jpg"))
    variants = []
    for index in range(count):
        with Image.open(sources[index % len(sources)]) as img:
            photo = img.convert("RGB")
        photo = [photo, ImageOps.mirror(photo), ImageOps.flip(photo)][index // len(sources) % 3]
        scale = SHORT_SIDE / min(photo.size)
        variants.append(photo.resize((round(photo.width * scale), round(photo.height * scale)),
                                     Image.Resampling.LANCZOS))
    return variants


def _toned(photo: Image.Image, tint: tuple[float, float, float]) -> Image.Image:
    gray = np.asarray(photo.convert("L"), dtype=np.float32)[..., None] / 255.0  # [H, W, 1]
    return Image.fromarray(np.rint(gray * np.array(tint) * 255).astype(np.uint8), "RGB")


def build(root: Path, *, clean: int = 100) -> dict[str, list[str]]:
    """Writes the tree under `root`; returns file names by kind (clean, grayscale, sepia,
    truncated, too_small)."""
    folder = root / SPLIT
    folder.mkdir(parents=True, exist_ok=True)
    photos = _colour_variants(clean + 4)
    base = photos[clean:]  # material for the photos that must be dropped
    kinds: dict[str, list[str]] = {k: [] for k in ("clean", "grayscale", "sepia",
                                                   "truncated", "too_small")}
    images, annotations = [], []

    def add(kind: str, img: Image.Image, *, cut: float | None = None) -> None:
        image_id = 1000 + len(images) * 7  # sparse ids, like COCO's
        name = f"{image_id:012d}.jpg"
        path = folder / name
        img.save(path, quality=90)
        if cut is not None:  # a transfer that stopped part-way
            path.write_bytes(path.read_bytes()[: int(path.stat().st_size * cut)])
        kinds[kind].append(name)
        images.append({"id": image_id, "file_name": name, "width": img.width,
                       "height": img.height, "license": 1,
                       "coco_url": f"http://images.cocodataset.org/{SPLIT}/{name}"})
        annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                            "category_id": 1 + len(images) % 2, "iscrowd": 0,
                            "bbox": [1.0, 2.0, img.width / 2, img.height / 3],
                            "area": img.width * img.height / 6, "segmentation": []})

    for photo in photos[:clean]:
        add("clean", photo)
    add("grayscale", base[0].convert("L"))
    add("grayscale", base[1].convert("L").convert("RGB"))
    add("sepia", _toned(base[2], (1.0, 0.82, 0.6)))
    add("sepia", _toned(base[3], (0.75, 0.85, 1.0)))  # a blue-toned (cyanotype-like) print
    add("truncated", base[0], cut=0.55)
    add("truncated", base[1], cut=0.8)
    add("too_small", base[2].resize((40, 30)))
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / f"instances_{SPLIT}.json").write_text(json.dumps({
        "info": {"description": "test tree"}, "licenses": [{"id": 1, "name": "CC BY"}],
        "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "supercategory": "person"},
                       {"id": 2, "name": "dog", "supercategory": "animal"}]}))
    return kinds


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "coco-tree")
    made = build(target)
    print(f"{target}: " + ", ".join(f"{len(v)} {k}" for k, v in made.items()))

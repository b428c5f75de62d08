"""Photo -> training sample: decode, centre crop, batched Lab, curation filters, encoding.

Every photo a snapshot considers gets an `Outcome`: either a kept sample (compact bytes plus
its filter scores) or a drop reason. The filters, in order:

- `unreadable`: the bytes do not fully decode (truncated, corrupt, not an image);
- `size_mismatch`: decoded size differs from what the annotation says (COCO);
- `too_small`: the short side is below `min_side`;
- `grayscale`: mean Lab chroma below `min_mean_chroma` (grayscale and near-grayscale);
- `single_tint`: chroma-weighted circular spread of the hue below `min_hue_spread` degrees:
  sepia, cyanotype and other toned photos, whose colour varies in lightness but not hue.
  Measured on 578 real photos of shared/data: 1 % score below the default 3 degrees
  (near-monochrome scenes); of 1,331 sepia, red, green and blue toned JPEG copies of
  them, 98.5 % do.

Sample format (format_version 2): `lab.webp`, a lossless WebP whose three 8-bit channels
are L * 255 / 100, a + 128 and b + 128 (rounded, clipped). Quantisation costs ~0.35 mean
CIEDE2000 (tests/test_samples.py measures it) at ~88 KB per 256-px photo, against ~396 KB
for the float16 `lab.npy` of format_version 1.
"""

from __future__ import annotations

import atexit
import io
import math
import multiprocessing
import threading
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from colorization import color
from colorization.constants import HUE_GRID

SAMPLE_MEMBER = "lab.webp"  # name of the sample inside a shard (WebDataset extension)
LEGACY_MEMBER = "lab.npy"  # format_version 1: float16 [3, S, S]
DROP_REASONS = ("excluded", "unreadable", "size_mismatch", "too_small", "grayscale",
                "single_tint")
_L_SCALE = 255.0 / 100.0
_AB_OFFSET = 128.0
# Lossless WebP at its fastest effort levels: ~15 % smaller than PNG, several times faster.
_WEBP_OPTIONS = {"lossless": True, "quality": 0, "method": 1}


@dataclass(frozen=True)
class FilterConfig:
    """Crop size and thresholds of the curation filters."""

    image_size: int
    min_side: int
    min_mean_chroma: float
    min_hue_spread: float


@dataclass
class Outcome:
    """What became of one photo; `sample` holds the encoded bytes of a kept one."""

    id: str
    reason: str | None = None  # one of DROP_REASONS, None when kept
    detail: str = ""
    scores: dict[str, float] | None = None  # set whenever the photo decoded
    sample: bytes | None = field(default=None, repr=False)

    def summary(self) -> dict:
        """A small JSON-able dict, without the sample bytes."""
        return {"id": self.id, "reason": self.reason, "detail": self.detail,
                "scores": self.scores}


class Dropped(ValueError):
    """A photo left out, with its reason (one of DROP_REASONS)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def decode_crop(data: bytes, *, name: str, image_size: int, min_side: int = 1,
                expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Image bytes -> uint8 RGB centre square [S, S, 3], resized with bicubic antialiasing.

    Large JPEGs are decoded in draft mode (libjpeg's DCT scaling) at the smallest power-of-
    two reduction that still leaves the short side >= `image_size`, so a 4000-px photo
    never decodes at full size. Raises `Dropped` for unreadable, mis-sized or small photos.
    """
    try:
        with Image.open(io.BytesIO(data)) as header:
            size, fmt = header.size, header.format
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise Dropped("unreadable", f"{name}: not a readable image ({exc})") from exc
    if expected_size is not None and tuple(size) != tuple(expected_size):
        raise Dropped("size_mismatch", f"{name}: {size[0]}x{size[1]}, annotation says "
                      f"{expected_size[0]}x{expected_size[1]}")
    if min(size) < min_side:
        raise Dropped("too_small", f"{name}: {size[0]}x{size[1]} is below {min_side} px")
    draft = None
    if fmt == "JPEG" and min(size) >= 2 * image_size:
        scale = image_size / min(size)
        draft = (math.ceil(size[0] * scale), math.ceil(size[1] * scale))
    try:
        img = color.load_image(data, name=name, draft=draft)
    except ValueError as exc:
        raise Dropped("unreadable", str(exc)) from exc
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    square = img.resize((image_size, image_size), Image.Resampling.BICUBIC,
                        box=(left, top, left + side, top + side))
    return np.asarray(square, dtype=np.uint8)  # [S, S, 3]


def filter_scores(rgb: np.ndarray, lab: np.ndarray) -> dict[str, float]:
    """Curation scores of one photo: uint8 sRGB [H, W, 3] and its Lab [3, H, W].

    mean_chroma: mean Lab sqrt(a^2 + b^2); near 0 for grayscale. hue_spread: how much the
    hue varies, in degrees. A toned print is gray x tint, so in linear RGB every pixel has
    the tint's chromaticity whatever its lightness (Lab's hue drifts with lightness for
    blue tints, so Lab is not used here). On a 16 x 16 grid of block means (averaging out
    JPEG chroma noise), each block's offset from neutral chromaticity is a 2-D vector,
    weighted by the block's brightness; with R = |sum of vectors| / sum of their lengths,
    hue_spread = sqrt(-2 ln R), the circular standard deviation. One tint gives ~0.
    """
    chroma = float(np.hypot(lab[1], lab[2]).mean(dtype=np.float64))
    grid = min(HUE_GRID, rgb.shape[0], rgb.shape[1])
    h, w = rgb.shape[0] // grid, rgb.shape[1] // grid
    linear = color.srgb8_to_linear(rgb[: h * grid, : w * grid])  # [H', W', 3] float32
    blocks = linear.reshape(grid, h, grid, w, 3).mean(axis=(1, 3), dtype=np.float64)
    total = blocks.sum(axis=-1)  # [grid, grid] brightness
    offset = blocks - total[..., None] / 3.0  # chromaticity offset x brightness
    x = offset[..., 0] - 0.5 * (offset[..., 1] + offset[..., 2])  # red axis
    y = math.sqrt(3.0) / 2.0 * (offset[..., 1] - offset[..., 2])  # green-blue axis
    length = float(np.hypot(x, y).sum())
    if length <= 1e-9 * max(float(total.sum()), 1e-12):  # exactly neutral: no hue at all
        return {"mean_chroma": round(chroma, 4), "hue_spread": 0.0}
    resultant = math.hypot(float(x.sum()), float(y.sum())) / length
    # Capped at 180: evenly spread hues (R -> 0) have an unbounded circular deviation.
    spread = min(180.0, math.degrees(math.sqrt(-2.0 * math.log(min(max(resultant, 1e-12),
                                                                    1.0)))))
    return {"mean_chroma": round(chroma, 4), "hue_spread": round(spread, 4)}


def drop_reason(scores: dict[str, float], config: FilterConfig) -> tuple[str, str] | None:
    """(reason, detail) when the scores fail a colour filter; None when the photo is kept."""
    if scores["mean_chroma"] < config.min_mean_chroma:
        return "grayscale", (f"mean chroma {scores['mean_chroma']:.2f} < "
                             f"{config.min_mean_chroma}")
    if scores["hue_spread"] < config.min_hue_spread:
        return "single_tint", (f"hue spread {scores['hue_spread']:.2f} deg < "
                               f"{config.min_hue_spread} (sepia or another single tint)")
    return None


def encode_lab(lab: np.ndarray) -> bytes:
    """Lab float [3, S, S] -> the `lab.webp` bytes of format_version 2."""
    quantised = np.stack([lab[0] * _L_SCALE, lab[1] + _AB_OFFSET, lab[2] + _AB_OFFSET], -1)
    pixels = np.clip(np.rint(quantised), 0, 255).astype(np.uint8)  # [S, S, 3]
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="WEBP", **_WEBP_OPTIONS)
    return buffer.getvalue()


_DEQUANT_SCALE = np.array([1.0 / _L_SCALE, 1.0, 1.0], dtype=np.float32)[:, None, None]
_DEQUANT_OFFSET = np.array([0.0, -_AB_OFFSET, -_AB_OFFSET], dtype=np.float32)[:, None, None]


def decode_lab(data: bytes) -> np.ndarray:
    """`lab.webp` bytes -> Lab float32 [3, S, S]."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        pixels = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))  # [S, S, 3] u8
    lab = pixels.transpose(2, 0, 1).astype(np.float32)  # [3, S, S]
    lab *= _DEQUANT_SCALE
    lab += _DEQUANT_OFFSET
    return lab


def convert_chunk(items: Sequence[tuple[str, bytes | str, tuple[int, int] | None]],
                  config: FilterConfig) -> list[Outcome]:
    """Photos (id, bytes or an error message, expected size) -> outcomes, in order.

    The crops that decode are converted to Lab as one batch [B, 3, S, S].
    """
    outcomes: list[Outcome] = []
    crops: list[np.ndarray] = []
    for photo_id, data, expected in items:
        outcome = Outcome(photo_id)
        outcomes.append(outcome)
        if isinstance(data, str):  # the fetch already failed; data is its message
            outcome.reason, outcome.detail = "unreadable", data
            continue
        try:
            crops.append(decode_crop(data, name=photo_id, image_size=config.image_size,
                                     min_side=config.min_side, expected_size=expected))
        except Dropped as exc:
            outcome.reason, outcome.detail = exc.reason, str(exc)
            continue
        outcome.sample = b""  # placeholder: decoded, waiting for its Lab
    if crops:
        labs = iter(color.srgb8_to_lab(np.stack(crops)))  # [B, 3, S, S]
        rgbs = iter(crops)
        for outcome in outcomes:
            if outcome.sample is None:
                continue
            lab, rgb = next(labs), next(rgbs)
            outcome.scores = filter_scores(rgb, lab)
            dropped = drop_reason(outcome.scores, config)
            if dropped:
                outcome.reason, outcome.detail = dropped
                outcome.sample = None
            else:
                outcome.sample = encode_lab(lab)
    return outcomes


_pool: Executor | None = None
_pool_workers = 0
_pool_lock = threading.Lock()


def _worker_pool(workers: int) -> Executor:
    """One process pool per process, shared by concurrent callers (e.g. Prefect tasks)."""
    global _pool, _pool_workers
    with _pool_lock:
        if _pool is None or _pool_workers != workers:
            if _pool is not None:
                _pool.shutdown()
            methods = multiprocessing.get_all_start_methods()
            # fork: workers start in milliseconds and need no re-import of torch.
            context = multiprocessing.get_context("fork" if "fork" in methods else None)
            _pool, _pool_workers = ProcessPoolExecutor(workers, mp_context=context), workers
        return _pool


@atexit.register
def _shutdown_pool() -> None:
    if _pool is not None:
        _pool.shutdown(cancel_futures=True)


def convert_many(items: Sequence[tuple[str, bytes | str, tuple[int, int] | None]],
                 config: FilterConfig, *, workers: int, chunk: int) -> list[Outcome]:
    """`convert_chunk` over many photos, in `workers` processes (inline when 1); in order."""
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    if workers <= 1 or len(chunks) <= 1:
        return [o for part in chunks for o in convert_chunk(part, config)]
    pool = _worker_pool(workers)
    futures = [pool.submit(convert_chunk, part, config) for part in chunks]
    return [o for future in futures for o in future.result()]

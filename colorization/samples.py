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

Sample format (format_version 3): `lab.zst`, three Zstandard frames, one per plane of the
8-bit codes L * 255 / 100, a + 128 and b + 128 (rounded, clipped; planar [3, S, S]), each
frame holding the plane's 2-D differences x - left - up + up-left (mod 256, zero outside),
which a summed-area table (cv2.integral) undoes. Quantisation costs ~0.35 mean CIEDE2000
(tests/test_samples.py measures it); on the real photos of shared/data a 256-px sample
takes ~88 KB (~91 KB in its shard, tar headers included), encodes in ~0.3 ms and decodes in
~0.3 ms, against ~80 KB, 9-12 ms and 1.5 ms for format_version 2's lossless WebP
`lab.webp` of the same codes, which still loads, as does format_version 1's float16
`lab.npy` (~396 KB).
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
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from colorization import color
from colorization.constants import (
    HUE_GRID,
    SAMPLE_ZSTD_HASH_LOG,
    SAMPLE_ZSTD_LEVEL,
    SAMPLE_ZSTD_MIN_MATCH,
    SAMPLE_ZSTD_WINDOW_LOG,
)

try:  # Python 3.14+: the standard library's Zstandard (PEP 784); before: its backport
    from compression import zstd  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the Python version
    from backports import zstd  # type: ignore[no-redef,unused-ignore]

SAMPLE_MEMBER = "lab.zst"  # name of the sample inside a shard (WebDataset extension)
WEBP_MEMBER = "lab.webp"  # format_version 2: lossless WebP of the same 8-bit codes
LEGACY_MEMBER = "lab.npy"  # format_version 1: float16 [3, S, S]
SAMPLE_ENCODING = ("Zstandard frames of L*255/100, a+128, b+128 (8-bit planes), each the "
                   "2-D differences x - left - up + upleft mod 256")
DROP_REASONS = ("excluded", "unreadable", "size_mismatch", "too_small", "grayscale",
                "single_tint")
L_CODE_SCALE = 255.0 / 100.0  # 8-bit code of L = L * 255 / 100
AB_CODE_OFFSET = 128.0  # 8-bit codes of a, b = a + 128, b + 128
_ZSTD_OPTIONS = {zstd.CompressionParameter.compression_level: SAMPLE_ZSTD_LEVEL,
                 zstd.CompressionParameter.window_log: SAMPLE_ZSTD_WINDOW_LOG,
                 zstd.CompressionParameter.hash_log: SAMPLE_ZSTD_HASH_LOG,
                 zstd.CompressionParameter.min_match: SAMPLE_ZSTD_MIN_MATCH}
# codes = M @ (L, a, b, 1): [3, 4]
_QUANT_MATRIX = np.array([[L_CODE_SCALE, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, AB_CODE_OFFSET],
                          [0.0, 0.0, 1.0, AB_CODE_OFFSET]], dtype=np.float32)


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
    # Where a staged kept sample lies instead (see `convert_chunk`'s `stage`):
    # (file name in the stage folder, byte offset, length).
    staged: tuple[str, int, int] | None = None

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
    """Image bytes -> uint8 RGB centre square [S, S, 3], resized with Pillow's antialiased
    bilinear (triangle) filter: half the taps of bicubic, and no ringing; smoother than
    area averaging, which makes samples ~4 % larger.

    Large JPEGs are decoded in draft mode (libjpeg's DCT scaling) at the smallest power-of-
    two reduction that still leaves the short side >= `image_size`, so a 4000-px photo
    never decodes at full size. Raises `Dropped` for unreadable, mis-sized or small photos.
    """
    try:
        opened = Image.open(io.BytesIO(data))  # the header only: one parse, reused below
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise Dropped("unreadable", f"{name}: not a readable image ({exc})") from exc
    with opened:
        size, fmt = opened.size, opened.format
        if expected_size is not None and tuple(size) != tuple(expected_size):
            raise Dropped("size_mismatch", f"{name}: {size[0]}x{size[1]}, annotation says "
                          f"{expected_size[0]}x{expected_size[1]}")
        if min(size) < min_side:
            raise Dropped("too_small", f"{name}: {size[0]}x{size[1]} is below {min_side} px")
        draft = None
        if fmt == "JPEG" and min(size) >= 2 * image_size:
            scale = image_size / min(size)
            draft = (math.ceil(size[0] * scale), math.ceil(size[1] * scale))
        # Plain RGB JPEGs only: prepare ignores embedded profiles on both paths.
        fast = (color.decode_upright_jpeg(data, opened)
                if opened.mode == "RGB" and draft is None else None)
        if fast is not None:
            img = Image.fromarray(fast)
        else:
            try:
                img = color.decode_opened(opened, name=name, draft=draft)
            except ValueError as exc:
                raise Dropped("unreadable", str(exc)) from exc
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    square = img.resize((image_size, image_size), Image.Resampling.BILINEAR,
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
    return _scores(color.srgb8_to_linear(rgb), lab[1], lab[2])


def _scores(linear: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """`filter_scores` from linear light [H, W, 3] and the a, b planes [H, W]."""
    a, b = (np.ascontiguousarray(p, dtype=np.float32) for p in (a, b))
    chroma = float(cv2.mean(cv2.magnitude(a, b))[0])  # accumulated in float64
    grid = min(HUE_GRID, linear.shape[0], linear.shape[1])
    h, w = linear.shape[0] // grid, linear.shape[1] // grid
    # INTER_AREA at an integer factor is the exact block mean: [grid, grid, 3].
    blocks = cv2.resize(linear[: h * grid, : w * grid], (grid, grid),
                        interpolation=cv2.INTER_AREA).astype(np.float64)
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


def quantise(lab: np.ndarray) -> np.ndarray:
    """Lab float [H, W, 3] -> the 8-bit codes uint8 [H, W, 3]: rounded (half to even, as
    np.rint) and clipped to [0, 255]. Two OpenCV passes, ~8x faster than NumPy's five."""
    scaled = cv2.transform(np.ascontiguousarray(lab, dtype=np.float32), _QUANT_MATRIX)
    np.maximum(scaled, 0.0, out=scaled)  # the saturating cast below takes |x|
    return cv2.convertScaleAbs(scaled)


def encode_codes(codes: np.ndarray) -> bytes:
    """uint8 codes [3, S, S] -> the `lab.zst` bytes of format_version 3."""
    if codes.dtype != np.uint8 or codes.ndim != 3 or codes.shape[0] != 3:
        raise ValueError(f"expected uint8 [3, S, S], got {codes.dtype} {codes.shape}")
    across = codes.copy()  # uint8 arithmetic wraps: the residuals are mod 256
    across[:, :, 1:] -= codes[:, :, :-1]  # x - left
    residuals = across.copy()
    residuals[:, 1:, :] -= across[:, :-1, :]  # ... - (up - upleft)
    return b"".join(zstd.compress(plane.tobytes(), options=_ZSTD_OPTIONS) for plane in residuals)


def encode_lab(lab: np.ndarray) -> bytes:
    """Lab float [3, S, S] -> the `lab.zst` bytes of format_version 3."""
    return encode_codes(np.moveaxis(quantise(np.moveaxis(lab, 0, -1)), -1, 0))


def decode_codes(data: bytes) -> np.ndarray:
    """`lab.zst` bytes -> uint8 codes [3, S, S]; ValueError when they are not a sample."""
    try:
        raw = zstd.decompress(data)
    except zstd.ZstdError as exc:
        raise ValueError(f"not a {SAMPLE_MEMBER} sample ({exc})") from exc
    side = math.isqrt(len(raw) // 3)
    if len(raw) != 3 * side * side or side == 0:
        raise ValueError(f"a {SAMPLE_MEMBER} sample holds 3 square planes, not {len(raw)} bytes")
    residuals = np.frombuffer(raw, dtype=np.uint8).reshape(3, side, side)
    codes = np.empty((3, side, side), dtype=np.uint8)
    for plane, residual in zip(codes, residuals, strict=True):
        # Summed-area table [S + 1, S + 1] int32 (< 2^31 up to S = 2,900); mod 256 by the cast.
        plane[...] = cv2.integral(residual)[1:, 1:].astype(np.uint8)
    return codes


def decode_webp_codes(data: bytes) -> np.ndarray:
    """format_version 2 `lab.webp` bytes -> uint8 codes [3, S, S]."""
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        pixels = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))  # [S, S, 3] u8
    return pixels.transpose(2, 0, 1)


_DEQUANT_SCALE = np.array([1.0 / L_CODE_SCALE, 1.0, 1.0], dtype=np.float32)[:, None, None]
_DEQUANT_OFFSET = np.array([0.0, -AB_CODE_OFFSET, -AB_CODE_OFFSET],
                           dtype=np.float32)[:, None, None]


def dequantise(codes: np.ndarray) -> np.ndarray:
    """uint8 codes [3, S, S] -> Lab float32 [3, S, S]."""
    lab = codes.astype(np.float32)
    lab *= _DEQUANT_SCALE
    lab += _DEQUANT_OFFSET
    return lab


def decode_lab(data: bytes) -> np.ndarray:
    """`lab.zst` bytes -> Lab float32 [3, S, S]."""
    return dequantise(decode_codes(data))


def sample_codes(sample: dict) -> np.ndarray | None:
    """A raw WebDataset sample -> its uint8 codes [3, S, S] (format_version 3 or 2), or None
    for a format_version 1 sample (float16 `lab.npy`, no codes)."""
    if SAMPLE_MEMBER in sample:
        return decode_codes(sample[SAMPLE_MEMBER])
    if WEBP_MEMBER in sample:
        return decode_webp_codes(sample[WEBP_MEMBER])
    if LEGACY_MEMBER in sample:
        return None
    raise ValueError(f"sample {sample.get('__key__', '?')!r} holds none of {SAMPLE_MEMBER}, "
                     f"{WEBP_MEMBER}, {LEGACY_MEMBER}")


def sample_lab(sample: dict) -> np.ndarray:
    """A raw WebDataset sample of any format_version -> Lab float32 [3, S, S]."""
    codes = sample_codes(sample)
    if codes is not None:
        return dequantise(codes)
    return np.load(io.BytesIO(sample[LEGACY_MEMBER])).astype(np.float32)


def crop_scores(rgb: np.ndarray) -> dict[str, float]:
    """`filter_scores` of a crop uint8 [S, S, 3] exactly as `convert_chunk` computes them."""
    linear = color.srgb8_to_linear(rgb)
    return _scores(linear, *_ab_planes(color.linear_to_lab(linear)))


def _ab_planes(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The a and b planes [H, W] of Lab [H, W, 3], contiguous. Two extractChannel calls
    cost a fifth of one cv2.split, which also copies the unused L plane."""
    return cv2.extractChannel(lab, 1), cv2.extractChannel(lab, 2)


def _convert(rgb: np.ndarray, outcome: Outcome, config: FilterConfig) -> None:
    """Scores, filters and (when kept) the encoded sample of one crop [S, S, 3]."""
    linear = color.srgb8_to_linear(rgb)  # [S, S, 3] float32
    lab = color.linear_to_lab(linear)  # [S, S, 3]
    outcome.scores = _scores(linear, *_ab_planes(lab))
    dropped = drop_reason(outcome.scores, config)
    if dropped:
        outcome.reason, outcome.detail = dropped
    else:
        outcome.sample = encode_codes(quantise(lab).transpose(2, 0, 1))  # codes [3, S, S]


# A photo to convert: (id, its bytes, a local file, or the message of a failed fetch, the
# size its annotation gives).
Item = tuple[str, bytes | str | Path, tuple[int, int] | None]


def convert_chunk(items: Sequence[Item], config: FilterConfig, *,
                  stage: Path | None = None) -> list[Outcome]:
    """Photos (id, bytes or a local file or an error message, expected size) -> outcomes,
    in order.

    One photo at a time from decode to encoded sample, while its crop is still in cache.
    With `stage` (a file path), the kept samples are written there one after another and
    each outcome says where (`staged`) instead of carrying the bytes: no copy through the
    pool's pipe, and one file per chunk instead of one per photo (creating files is what
    cost the parent process most).
    """
    outcomes = _convert_chunk(items, config)
    if stage is not None:
        offset, parts = 0, []
        for outcome in outcomes:
            if outcome.sample is not None:
                parts.append(outcome.sample)
                outcome.staged = (stage.name, offset, len(outcome.sample))
                offset += len(outcome.sample)
                outcome.sample = None
        stage.write_bytes(b"".join(parts))
    return outcomes


def _convert_chunk(items: Sequence[Item], config: FilterConfig) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for photo_id, data, expected in items:
        outcome = Outcome(photo_id)
        outcomes.append(outcome)
        if isinstance(data, Path):
            path = data
            try:
                data = path.read_bytes()
            except OSError as exc:  # missing / unreadable file: reported, the rest goes on
                data = f"{path}: cannot read ({exc})"
        if isinstance(data, str):  # the fetch already failed; data is its message
            outcome.reason, outcome.detail = "unreadable", data
            continue
        try:
            rgb = decode_crop(data, name=photo_id, image_size=config.image_size,
                              min_side=config.min_side, expected_size=expected)
        except Dropped as exc:
            outcome.reason, outcome.detail = exc.reason, str(exc)
            continue
        _convert(rgb, outcome, config)
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


def convert_many(items: Sequence[Item], config: FilterConfig, *, workers: int,
                 chunk: int, stage: Path | None = None) -> list[Outcome]:
    """`convert_chunk` over many photos, in `workers` processes (inline when 1); in order.
    With `stage` (a folder), chunk i stages its kept samples in `stage/chunk-<i>.bin`."""
    chunks = [items[i:i + chunk] for i in range(0, len(items), chunk)]
    files = [stage / f"chunk-{i:04d}.bin" if stage else None for i in range(len(chunks))]
    if workers <= 1 or len(chunks) <= 1:
        return [o for part, file in zip(chunks, files, strict=True)
                for o in convert_chunk(part, config, stage=file)]
    pool = _worker_pool(workers)
    futures = [pool.submit(convert_chunk, part, config, stage=file)
               for part, file in zip(chunks, files, strict=True)]
    return [o for future in futures for o in future.result()]

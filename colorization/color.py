"""CIE Lab conversion for batched tensors, and the one home of the normalisation.

Convention (DESIGN.md): D65 white point, sRGB companding, as scikit-image. The network sees
L in [-1, 1] (L / 50 - 1) and ab in [-1, 1] (ab / 110, clamped). kornia does the colour
maths on any device; this module owns the scaling and the image <-> tensor helpers.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import cv2
import kornia.color
import numpy as np
import simplejpeg
import torch
from PIL import ExifTags, Image, ImageOps

# OpenCV single-threaded in this process: its thread pool does not survive fork (the
# preparation pool and DataLoader workers fork; a child touching the pool hangs), and our
# OpenCV calls work on one 256-px crop at a time, too small to split across threads.
cv2.setNumThreads(1)

# Normalisation constants: the only place they are defined.
L_CENTER = 50.0  # L in [0, 100] -> L / 50 - 1 in [-1, 1]
AB_SCALE = 110.0  # sRGB spans a in [-86, 98], b in [-108, 95] -> ab / 110, clamped to [-1, 1]
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
_WIDE_MODES = ("I", "F")  # 32-bit integer and float grey


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], [B, 3, H, W] (or [3, H, W]) -> Lab with L in [0, 100], same shape."""
    return kornia.color.rgb_to_lab(rgb.float())


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab [B, 3, H, W] -> sRGB in [0, 1]; out-of-gamut colours are clipped."""
    return kornia.color.lab_to_rgb(lab.float(), clip=True)


def normalize_l(l_channel: torch.Tensor) -> torch.Tensor:
    """L in [0, 100] -> [-1, 1]."""
    return l_channel / L_CENTER - 1.0


def denormalize_l(l_norm: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> L in [0, 100]."""
    return (l_norm + 1.0) * L_CENTER


def normalize_ab(ab: torch.Tensor) -> torch.Tensor:
    """ab in Lab units -> [-1, 1], clamped (sRGB never exceeds 110; other inputs might)."""
    return (ab / AB_SCALE).clamp(-1.0, 1.0)


def denormalize_ab(ab_norm: torch.Tensor) -> torch.Tensor:
    """[-1, 1] (clamped first, so a network's overshoot stays bounded) -> ab in Lab units."""
    return ab_norm.clamp(-1.0, 1.0) * AB_SCALE


def rgb_to_model_input(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sRGB [B, 3, H, W] in [0, 1] -> (L [B, 1, H, W], ab [B, 2, H, W]), both normalised."""
    lab = rgb_to_lab(rgb)
    return normalize_l(lab[:, :1]), normalize_ab(lab[:, 1:])


def model_output_to_rgb(l_norm: torch.Tensor, ab_norm: torch.Tensor) -> torch.Tensor:
    """Normalised L [B, 1, H, W] and ab [B, 2, H, W] -> sRGB [B, 3, H, W] in [0, 1]."""
    lab = torch.cat([denormalize_l(l_norm), denormalize_ab(ab_norm)], dim=1)
    return lab_to_rgb(lab)


def load_image(data: bytes, *, name: str = "<bytes>",
               draft: tuple[int, int] | None = None) -> Image.Image:
    """Decode image bytes to an RGB PIL image, honouring EXIF orientation.

    `draft` (JPEG only): decode at the smallest DCT scale whose size is still >= it.
    Raises ValueError naming `name` when the bytes are not a readable image.
    """
    try:
        with Image.open(io.BytesIO(data)) as opened:
            return decode_opened(opened, name=name, draft=draft)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{name}: not a readable image ({exc})") from exc


def decode_opened(opened: Image.Image, *, name: str = "<bytes>",
                  draft: tuple[int, int] | None = None) -> Image.Image:
    """`load_image` of an image `Image.open` gave (its header read once, by the caller, who
    also closes it); the result outlives it."""
    try:
        if draft is not None and opened.format == "JPEG":
            opened.draft("RGB", draft)
        opened.load()
        img: Image.Image = ImageOps.exif_transpose(opened)  # a copy: outlives `opened`
        if img.mode in _SIXTEEN_BIT_MODES or img.mode in _WIDE_MODES:
            img = to_8_bit_gray(img)
        return img if img.mode == "RGB" else img.convert("RGB")  # no second copy
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{name}: not a readable image ({exc})") from exc


def decode_upright_jpeg(data: bytes, opened: Image.Image) -> np.ndarray | None:
    """A JPEG `Image.open` gave (header read), decoded by libjpeg-turbo straight into an
    array: RGB [H, W, 3] or grey [H, W] (simplejpeg, ~2x Pillow's decode and copy). None
    where Pillow must decode it: another format or mode (CMYK), an EXIF rotation, or an error
    (Pillow tolerates some and names the rest). Embedded profiles are the caller's concern."""
    if opened.format != "JPEG" or opened.mode not in ("RGB", "L"):
        return None
    if opened.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        return None
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB" if opened.mode == "RGB"
                                        else "GRAY")
    except ValueError:
        return None
    return pixels if opened.mode == "RGB" else pixels[..., 0]


def to_8_bit_gray(img: Image.Image) -> Image.Image:
    """Grey deeper than 8 bits -> 8-bit 'L'; Pillow's own convert would clip at 255.

    16-bit modes keep their top 8 bits. 32-bit integer ('I') and float ('F') images have no
    fixed range, so they are scaled by the one their values really use: from 0 (or the
    minimum, when negative) to the maximum; data that already fits 8 bits (or [0, 1] for
    floats) keeps its levels.
    """
    if img.mode in _SIXTEEN_BIT_MODES:
        high_bits = np.asarray(img).astype(np.uint32) >> 8
        return Image.fromarray(high_bits.clip(0, 255).astype(np.uint8))
    values = np.asarray(img, dtype=np.float64)  # [H, W]
    low = min(0.0, float(values.min()))
    top = float(values.max())
    high = 1.0 if img.mode == "F" and top <= 1.0 else max(top, 255.0)
    scaled = (values - low) / max(high - low, 1e-12) * 255.0
    return Image.fromarray(np.rint(scaled).clip(0, 255).astype(np.uint8))


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image -> float sRGB tensor [3, H, W] in [0, 1]."""
    array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0  # [H, W, 3]
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def tensor_to_image(rgb: torch.Tensor) -> Image.Image:
    """Float sRGB tensor [3, H, W] in [0, 1] -> 8-bit PIL image (rounded, not truncated)."""
    array = (rgb.detach().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).cpu().numpy(), mode="RGB")


def encode_image(img: Image.Image, *, suffix: str, quality: int) -> bytes:
    """Encode a PIL image for the file suffix ('.jpg', '.png', ...)."""
    fmt = Image.registered_extensions().get(suffix.lower(), "PNG")
    buffer = io.BytesIO()
    options = {"quality": quality} if fmt == "JPEG" else {}
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------
# Issue 6: fast batched conversion of 8-bit sRGB for dataset preparation (NumPy, no torch),
# with the same constants as scikit-image and kornia: D65, sRGB companding.
# ----------------------------------------------------------------------------------------
_SRGB8_TO_LINEAR = np.where(
    (levels := np.arange(256, dtype=np.float64) / 255.0) <= 0.04045,
    levels / 12.92, ((levels + 0.055) / 1.055) ** 2.4).astype(np.float32)  # [256]
# XYZ from linear sRGB (rows X, Y, Z), as scikit-image; and the D65 white point.
_SRGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]], dtype=np.float64)
_D65_WHITE = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
# Each row divided by the white's component: XYZ / white from linear sRGB.
_XYZ_FROM_LINEAR = (_SRGB_TO_XYZ / _D65_WHITE[:, None]).astype(np.float32)


def srgb8_to_linear(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB, any shape -> float32 linear-light values in [0, 1] (a table lookup)."""
    if rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[-1] == 3:
        return cv2.LUT(rgb, _SRGB8_TO_LINEAR)  # an image [H, W, 3]: ~9x faster, same values
    return _SRGB8_TO_LINEAR[rgb]


def srgb8_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB [..., H, W, 3] -> float32 Lab [..., 3, H, W] (L in [0, 100]).

    A lookup table replaces the companding power, so a batch of 256-px crops converts in
    a few milliseconds per photo; agrees with skimage.color.rgb2lab to ~1e-3.
    """
    if rgb.dtype != np.uint8 or rgb.shape[-1] != 3:
        raise ValueError(f"expected uint8 [..., H, W, 3], got {rgb.dtype} {rgb.shape}")
    planes = np.moveaxis(rgb, -1, -3)  # [..., 3, H, W], a view
    linear = _SRGB8_TO_LINEAR[planes]  # [..., 3, H, W] float32, planar for fast arithmetic
    r, g, b = linear[..., 0, :, :], linear[..., 1, :, :], linear[..., 2, :, :]
    m = _XYZ_FROM_LINEAR
    f = np.stack([m[i, 0] * r + m[i, 1] * g + m[i, 2] * b for i in range(3)], axis=-3)
    small = f <= 0.008856
    cube = np.cbrt(f)
    f = np.where(small, f * np.float32(7.787) + np.float32(16.0 / 116.0), cube)
    fx, fy, fz = f[..., 0, :, :], f[..., 1, :, :], f[..., 2, :, :]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)],
                    axis=-3).astype(np.float32, copy=False)


# Issue 6 (speed): per-photo Lab for dataset preparation. Batching the NumPy formulas above
# over 16 crops spills the cache (4.5 ms a photo measured); OpenCV's fused conversion of one
# crop from linear light takes ~1 ms, and the exact companding stays ours (the table).
def linear_to_lab(linear: np.ndarray) -> np.ndarray:
    """float32 linear-light sRGB [H, W, 3] in [0, 1] -> float32 Lab [H, W, 3] (L in [0, 100]).

    OpenCV's linear RGB -> Lab (D65, the same matrix); agrees with skimage.color.rgb2lab of
    the 8-bit photo to 0.05 (tests/test_color.py).
    """
    if linear.dtype != np.float32 or linear.ndim != 3 or linear.shape[-1] != 3:
        raise ValueError(f"expected float32 [H, W, 3], got {linear.dtype} {linear.shape}")
    return cv2.cvtColor(linear, cv2.COLOR_LRGB2Lab)


# --- Full-resolution Lab for bulk inference -------------------------------------------------
# Bulk inference converts every pixel of every photo twice (RGB -> L, then L + ab -> RGB).
# These run in I/O threads beside the model without touching torch's thread pool (torch ops
# called from several threads would each spawn an OpenMP team and oversubscribe the cores);
# OpenCV is single-threaded here (above) and releases the GIL. They follow scikit-image's
# formulas (D65, sRGB companding).
_LAB_EPSILON = 6.0 / 29.0
_LINEAR_LEVELS = 65_536  # resolution of the luminance -> L* table (< 0.02 L* units off)
_LINEAR_OF_CODE = _SRGB8_TO_LINEAR  # 8-bit sRGB code -> linear light


def _lab_f(t: np.ndarray) -> np.ndarray:
    return np.where(t > _LAB_EPSILON ** 3, np.cbrt(t), t / (3 * _LAB_EPSILON ** 2) + 4.0 / 29.0)


# L* of each grey level (R = G = B), the common case of black-and-white scans; and of
# luminance Y quantised to _LINEAR_LEVELS steps.
_L_OF_GREY = (116.0 * _lab_f(_LINEAR_OF_CODE.astype(np.float64)) - 16.0).astype(np.float32)
_L_OF_LUMINANCE = (116.0 * _lab_f(np.linspace(0.0, 1.0, _LINEAR_LEVELS)) - 16.0).astype(
    np.float32)
# Y's row of the matrix, scaled so that Y lands on an index of _L_OF_LUMINANCE: [1, 3].
_Y_INDEX_ROW = (_SRGB_TO_XYZ[1:2] * (_LINEAR_LEVELS - 1)).astype(np.float32)


def srgb8_to_lightness(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB [H, W, 3] (or grey [H, W]) -> CIE L* in [0, 100], float32 [H, W]."""
    if rgb.ndim == 2:
        return _L_OF_GREY[rgb]
    # OpenCV's table lookup and 3 -> 1 channel transform: ~2x the numpy version's speed.
    index = cv2.transform(srgb8_to_linear(np.ascontiguousarray(rgb)), _Y_INDEX_ROW)
    nearest = (index + np.float32(0.5)).astype(np.int32)  # [H, W]
    return _L_OF_LUMINANCE[nearest.clip(0, _LINEAR_LEVELS - 1)]


def lab_to_srgb8(lightness: np.ndarray, ab: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """L* [H, W] and a*b* [2, H, W] (Lab units), float32 -> uint8 sRGB [H, W, 3].

    As scikit-image's lab2rgb (within one 8-bit level): a negative f(Z) is clipped to 0,
    out-of-gamut RGB clips. OpenCV's fused Lab -> sRGB, ~2.5x the numpy formulas' speed.
    """
    lightness = np.asarray(lightness, dtype=np.float32)
    # f(Z) = f(Y) - b/200 >= 0  <=>  b <= 200 f(Y) = 200 (L + 16) / 116: scikit-image's clip.
    b_max = (lightness + np.float32(16.0)) * np.float32(200.0 / 116.0)
    lab = cv2.merge([lightness, np.asarray(ab[0], dtype=np.float32),
                     np.minimum(np.asarray(ab[1], dtype=np.float32), b_max)])  # [H, W, 3]
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)  # float32 sRGB (companded), may leave [0, 1]
    np.clip(rgb, 0.0, 1.0, out=rgb)
    return cv2.convertScaleAbs(rgb, alpha=255.0)  # rounded to the nearest code

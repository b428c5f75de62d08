"""Image files in and out for inference: every common mode and format, alpha kept.

`decode` turns file bytes into an upright 8-bit sRGB picture plus its alpha channel (if any),
refusing from the header alone an image whose declared size is over a pixel limit, before
a byte of pixel data is decoded. `encode` writes the colorized picture back in the input's
format (or a chosen one), with the alpha channel re-attached where the format holds one.
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from colorization import color

logger = logging.getLogger(__name__)

# Modes that carry an alpha channel (premultiplied ones are unpremultiplied by convert()).
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_SRGB_PROFILE = ImageCms.createProfile("sRGB")


@dataclass(frozen=True)
class OutputFormat:
    """A format `--format` can force: Pillow's name, the file suffix, and alpha support."""

    pillow_name: str
    suffix: str
    keeps_alpha: bool


# `--format` choices; without one, the output keeps the input's suffix and format.
OUTPUT_FORMATS = MappingProxyType({
    "jpeg": OutputFormat("JPEG", ".jpg", False),
    "png": OutputFormat("PNG", ".png", True),
    "webp": OutputFormat("WEBP", ".webp", True),
    "tiff": OutputFormat("TIFF", ".tif", True),
})


@dataclass(frozen=True)
class DecodedImage:
    """An upright sRGB picture: `pixels` uint8 [H, W, 3] (or [H, W] when grey) and `alpha`
    uint8 [H, W] or None."""

    pixels: np.ndarray
    alpha: np.ndarray | None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as Pillow counts."""
        return self.pixels.shape[1], self.pixels.shape[0]


def check_pixel_limit(img: Image.Image, *, name: str, max_pixels: int) -> None:
    """ValueError naming `name` when the header declares more than `max_pixels` pixels."""
    width, height = img.size
    if width * height > max_pixels:
        raise ValueError(f"{name}: {width}x{height} pixels is over the limit of "
                         f"{max_pixels:,} pixels; refused without decoding")


def decode(data: bytes, *, name: str, max_pixels: int) -> DecodedImage:
    """File bytes -> DecodedImage; the first frame of animations; EXIF orientation applied;
    ICC profiles converted to sRGB; CMYK, palette, 16/32-bit grey converted.

    Raises ValueError naming `name` for empty, truncated, oversized or non-image bytes.
    """
    if not data:
        raise ValueError(f"{name}: empty file")
    try:
        with Image.open(io.BytesIO(data)) as opened:  # reads the header only
            check_pixel_limit(opened, name=name, max_pixels=max_pixels)
            fast = _plain_jpeg(data, opened)
            if fast is not None:
                return DecodedImage(pixels=fast, alpha=None)
            opened.load()  # the first frame of a GIF / multi-page TIFF
            img: Image.Image = ImageOps.exif_transpose(opened)
            return _to_srgb(img, name=name)
    except UnidentifiedImageError as exc:
        raise ValueError(f"{name}: not a readable image (no known image format)") from exc
    except Image.DecompressionBombError as exc:  # Pillow's own, larger limit
        raise ValueError(f"{name}: refused without decoding: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(f"{name}: "):
            raise
        raise ValueError(f"{name}: not a readable image ({exc})") from exc


def _plain_jpeg(data: bytes, opened: Image.Image) -> np.ndarray | None:
    """`color.decode_upright_jpeg` for a JPEG with no ICC profile but sRGB (a colour-managed
    one goes through Pillow and LittleCMS)."""
    icc = opened.info.get("icc_profile")
    if icc and (opened.mode != "RGB" or not _is_srgb_profile(icc)):
        return None
    return color.decode_upright_jpeg(data, opened)


def _to_srgb(img: Image.Image, *, name: str) -> DecodedImage:
    alpha = None
    if img.mode == "P":  # palette: transparency becomes a real alpha channel
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in _ALPHA_MODES:
        alpha = np.asarray(img.getchannel("A"))
        img = img.convert("RGB" if img.mode.upper().startswith("RGB") or img.mode == "PA"
                          else "L")
    elif img.mode in ("1", "I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = color.to_8_bit_gray(img) if img.mode != "1" else img.convert("L")
    icc = img.info.get("icc_profile")
    if icc and img.mode in ("RGB", "CMYK"):  # grey profiles keep their levels: L is L
        img = _icc_to_srgb(img, icc, name=name)
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")  # CMYK without a profile, YCbCr, LAB, HSV
    return DecodedImage(pixels=np.asarray(img), alpha=alpha)


@functools.lru_cache(maxsize=32)
def _rgb_profile_transform(icc: bytes) -> ImageCms.ImageCmsTransform | None:
    """The transform of an embedded RGB profile into sRGB, built once per profile; None
    when the profile is sRGB already (it moves no colour of a 16^3 grid by more than one
    8-bit level). Most photos carry such an "sRGB IEC61966-2.1" profile, and building and
    applying its transform cost more than decoding the photo."""
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    # NOCACHE: LittleCMS's one-pixel cache is not safe when threads share a transform.
    transform = ImageCms.buildTransform(source, _SRGB_PROFILE, "RGB", "RGB",
                                        flags=ImageCms.Flags.NOCACHE)
    moved = np.asarray(transform.apply(Image.fromarray(_GRID))).astype(np.int16) - _GRID
    return None if np.abs(moved).max() <= 1 else transform


# Every 17th 8-bit level of each channel: 16^3 colours as a [64, 64, 3] image.
_GRID = np.stack(np.meshgrid(*[np.arange(0, 256, 17, dtype=np.uint8)] * 3, indexing="ij"),
                 axis=-1).reshape(64, 64, 3)


def _is_srgb_profile(icc: bytes) -> bool:
    try:
        return _rgb_profile_transform(icc) is None
    except (ImageCms.PyCMSError, OSError, ValueError):  # broken: the slow path names it
        return False


def _icc_to_srgb(img: Image.Image, icc: bytes, *, name: str) -> Image.Image:
    """Colour-manage an embedded profile into sRGB; a broken profile is logged and ignored."""
    try:
        if img.mode == "RGB":
            transform = _rgb_profile_transform(icc)
            return img if transform is None else transform.apply(img)
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(img, source, _SRGB_PROFILE, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        logger.warning("%s: ignoring its ICC profile (%s)", name, exc)
        return img
    return converted if converted is not None else img


def encode(pixels: np.ndarray, *, alpha: np.ndarray | None, suffix: str, quality: int,
           name: str) -> bytes:
    """uint8 sRGB [H, W, 3] (+ alpha [H, W]) -> file bytes in the format of `suffix`."""
    fmt = Image.registered_extensions().get(suffix.lower())
    if fmt is None:
        raise ValueError(f"{name}: no image format writes {suffix!r} files")
    img = Image.fromarray(pixels)
    if alpha is not None:
        if fmt in ("JPEG", "BMP"):
            logger.warning("%s: %s has no alpha channel; it is dropped", name, fmt)
        else:
            img.putalpha(Image.fromarray(alpha))
    buffer = io.BytesIO()
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()

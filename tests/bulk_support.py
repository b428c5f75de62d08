"""An archive of good and awkward files, as users' real archives hold (for the bulk tests)."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageCms
from support import FIXTURE_PHOTOS

from colorization import storage

# Valid inputs: key -> (expected output size (W, H), whether the output keeps an alpha channel)
VALID: dict[str, tuple[tuple[int, int], bool]] = {
    "good one.jpg": ((96, 64), False),
    "ünïcödé 写真.jpg": ((96, 64), False),
    "nested/deeper/grey.png": ((96, 64), False),
    "cmyk.jpg": ((96, 64), False),
    "gray16.png": ((96, 64), False),
    "rgba.png": ((96, 64), True),
    "la.png": ((96, 64), True),
    "palette.gif": ((96, 64), False),
    "exif rotated.jpg": ((64, 96), False),  # orientation 6: stored 96x64, shown upright
    "srgb icc.webp": ((96, 64), False),
    "scan.tif": ((96, 64), False),
}
# Broken inputs: key -> a phrase their recorded reason contains.
BROKEN: dict[str, str] = {
    "truncated.jpg": "truncated",
    "empty.png": "empty file",
    "text.jpg": "not a readable image",
    "huge.png": "refused without decoding",
}
IGNORED = ["notes.txt"]
GREY_LOSSLESS = ("nested/deeper/grey.png", "gray16.png")  # hold exactly gray_photo()


def _photo() -> Image.Image:
    with Image.open(sorted(FIXTURE_PHOTOS.glob("*.jpg"))[0]) as img:
        return img.convert("RGB").resize((96, 64))


def gray_photo() -> Image.Image:
    """The 8-bit grey picture the grey inputs hold."""
    return _photo().convert("L")


def _encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height (8-bit RGB) and holds no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(
            kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def alpha_ramp() -> np.ndarray:
    """The alpha channel of the RGBA and LA inputs: uint8 [64, 96]."""
    return np.tile(np.linspace(0, 255, 96).astype(np.uint8), (64, 1))


def archive_files() -> dict[str, bytes]:
    """Every file of the test archive by key."""
    photo = _photo()
    gray = photo.convert("L")
    rgba = photo.copy()
    rgba.putalpha(Image.fromarray(alpha_ramp()))
    la = gray.copy()
    la.putalpha(Image.fromarray(alpha_ramp()))
    gray16 = Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    good = _encode(photo, "JPEG", quality=90)
    return {
        "good one.jpg": good,
        "ünïcödé 写真.jpg": _encode(gray, "JPEG", quality=90),
        "nested/deeper/grey.png": _encode(gray, "PNG"),
        "cmyk.jpg": _encode(photo.convert("CMYK"), "JPEG", quality=90),
        "gray16.png": _encode(gray16, "PNG"),
        "rgba.png": _encode(rgba, "PNG"),
        "la.png": _encode(la, "PNG"),
        "palette.gif": _encode(photo.convert("P", palette=Image.Palette.ADAPTIVE), "GIF"),
        "exif rotated.jpg": _encode(photo, "JPEG", exif=exif.tobytes()),
        "srgb icc.webp": _encode(photo, "WEBP", icc_profile=srgb),
        "scan.tif": _encode(gray, "TIFF"),
        "truncated.jpg": good[: len(good) // 2],
        "empty.png": b"",
        "text.jpg": b"Dear archivist, this is a letter, not a photo.\n",
        "huge.png": _png_header_only(100_000, 100_000),
        "notes.txt": b"sidecar notes, not an image\n",
    }


def make_archive(prefix: str) -> dict[str, str]:
    """Writes the archive under a folder or s3:// prefix; returns key -> sha256 of bytes."""
    digests = {}
    for key, data in archive_files().items():
        storage.write_bytes(storage.join(prefix, key), data)
        digests[key] = hashlib.sha256(data).hexdigest()
    return digests


def digests(prefix: str) -> dict[str, str]:
    """key -> sha256 of every file under a prefix (to prove inputs were left untouched)."""
    return {storage.relative_key(url, prefix): hashlib.sha256(storage.read_bytes(url)).hexdigest()
            for url in storage.list_files(prefix)}

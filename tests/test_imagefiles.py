"""Decoding every common mode and format for inference, and encoding with alpha kept."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageCms
from skimage.color import lab2rgb, rgb2lab

from colorization import color, imagefiles


def _png(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_pixel_limit_refuses_from_the_header():
    data = _png(Image.new("L", (300, 200)))
    assert imagefiles.decode(data, name="ok.png", max_pixels=60_000).size == (300, 200)
    with pytest.raises(ValueError, match=r"big.png: 300x200 pixels is over the limit of 59,999"):
        imagefiles.decode(data, name="big.png", max_pixels=59_999)


def test_palette_transparency_becomes_alpha_and_cmyk_becomes_rgb():
    palette = Image.new("P", (4, 2), 1)
    palette.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.info["transparency"] = 0
    decoded = imagefiles.decode(_png(palette), name="p.png", max_pixels=100)
    assert decoded.alpha is not None and decoded.alpha[0, 0] == 0 and decoded.alpha[1, 1] == 255
    assert tuple(decoded.pixels[1, 1]) == (200, 100, 50)
    cmyk = Image.new("CMYK", (3, 3), (0, 255, 255, 0))  # pure red ink
    buffer = io.BytesIO()
    cmyk.save(buffer, format="TIFF")
    rgb = imagefiles.decode(buffer.getvalue(), name="c.tif", max_pixels=100).pixels
    assert tuple(rgb[0, 0]) == (255, 0, 0)


def test_encode_keeps_alpha_where_the_format_can():
    pixels = np.full((5, 6, 3), 90, np.uint8)
    alpha = np.arange(30, dtype=np.uint8).reshape(5, 6) * 8
    for suffix in (".png", ".webp", ".tif"):
        data = imagefiles.encode(pixels, alpha=alpha, suffix=suffix, quality=100, name="x")
        back = imagefiles.decode(data, name="x", max_pixels=100)
        np.testing.assert_array_equal(back.alpha, alpha)
    jpeg = imagefiles.encode(pixels, alpha=alpha, suffix=".jpg", quality=90, name="x")
    assert imagefiles.decode(jpeg, name="x", max_pixels=100).alpha is None
    with pytest.raises(ValueError, match="x: no image format writes '.xyz'"):
        imagefiles.encode(pixels, alpha=None, suffix=".xyz", quality=90, name="x")


def test_numpy_lab_matches_scikit_image():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    reference = rgb2lab(rgb / 255.0)
    assert np.abs(color.srgb8_to_lightness(rgb) - reference[..., 0]).max() < 0.02
    assert np.abs(color.srgb8_to_lightness(rgb[..., 0])
                  - rgb2lab(np.repeat(rgb[..., :1], 3, -1) / 255.0)[..., 0]).max() < 1e-3
    lab = np.stack([rng.uniform(0, 100, (40, 50)), rng.uniform(-110, 110, (40, 50)),
                    rng.uniform(-110, 110, (40, 50))], axis=-1)  # much of it out of gamut
    with pytest.warns(UserWarning):  # scikit-image reports its clipping of negative Z
        expected = np.rint(lab2rgb(lab) * 255)
    mine = color.lab_to_srgb8(lab[..., 0].astype(np.float32),
                              lab[..., 1:].transpose(2, 0, 1).astype(np.float32))
    assert np.abs(mine - expected).max() <= 1


def _srgb_profile(*, red_x_scale: float = 1.0) -> bytes:
    """Pillow's sRGB profile; with `red_x_scale`, its red primary's X moved (another RGB
    space, as a camera or Adobe RGB profile is)."""
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    for index in range(int.from_bytes(icc[128:132], "big")):  # the tag table
        signature, offset, _ = struct.unpack(">4sII", icc[132 + 12 * index:144 + 12 * index])
        if signature == b"rXYZ":  # 'XYZ ', 4 reserved bytes, then X as s15Fixed16
            x = int.from_bytes(icc[offset + 8:offset + 12], "big", signed=True)
            icc[offset + 8:offset + 12] = round(x * red_x_scale).to_bytes(4, "big", signed=True)
    return bytes(icc)


def test_embedded_profiles_sRGB_ones_decode_as_they_are_others_are_converted(fixture_photos):
    photo = Image.open(sorted(fixture_photos.glob("*.jpg"))[0]).convert("RGB")
    plain, srgb, other = io.BytesIO(), io.BytesIO(), io.BytesIO()
    photo.save(plain, format="JPEG", quality=90)
    photo.save(srgb, format="JPEG", quality=90, icc_profile=_srgb_profile())
    photo.save(other, format="JPEG", quality=90, icc_profile=_srgb_profile(red_x_scale=0.7))
    raw = np.asarray(Image.open(io.BytesIO(plain.getvalue())).convert("RGB"))
    assert imagefiles._is_srgb_profile(_srgb_profile())
    assert not imagefiles._is_srgb_profile(_srgb_profile(red_x_scale=0.7))
    decoded = imagefiles.decode(srgb.getvalue(), name="srgb.jpg", max_pixels=10**7).pixels
    np.testing.assert_array_equal(decoded, raw)  # an sRGB profile changes nothing
    converted = imagefiles.decode(other.getvalue(), name="other.jpg", max_pixels=10**7).pixels
    reference = np.asarray(ImageCms.profileToProfile(
        Image.fromarray(raw), ImageCms.ImageCmsProfile(io.BytesIO(_srgb_profile(
            red_x_scale=0.7))), ImageCms.createProfile("sRGB"), outputMode="RGB"))
    assert np.abs(converted.astype(int) - reference).max() <= 1
    assert np.abs(converted.astype(int) - raw).mean() > 2  # the conversion did move colours

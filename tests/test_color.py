"""Tests of colorization.color against scikit-image (D65 Lab) on real photos and known answers."""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import lab2rgb, rgb2lab

from colorization import color

FIXTURES = Path(__file__).parent / "fixtures" / "photos"
PHOTOS = sorted(FIXTURES.glob("*.jpg"))
N_PHOTOS = 8  # photos used per test (>= 6 asked for); a spread across the fixture set
CROP = 160  # every fixture's short side is >= 160 px (long side 256)

# Built at import time: CUDA is added only where it exists, so nothing is ever skipped.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

ONE_LEVEL = 1.0 / 255.0


def _read_rgb(path: Path) -> np.ndarray:
    """Decodes a fixture with Pillow directly (independent of color.load_image): uint8 [H, W, 3]."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _center_crop(array: np.ndarray, size: int) -> np.ndarray:
    height, width = array.shape[:2]
    top, left = (height - size) // 2, (width - size) // 2
    return array[top : top + size, left : left + size]


@pytest.fixture(scope="module")
def photos_u8() -> np.ndarray:
    """N_PHOTOS real photos, centre-cropped to CROP x CROP: uint8 [B, H, W, 3]."""
    assert len(PHOTOS) >= N_PHOTOS, f"expected >= {N_PHOTOS} fixture photos in {FIXTURES}"
    step = len(PHOTOS) // N_PHOTOS
    chosen = PHOTOS[::step][:N_PHOTOS]
    return np.stack([_center_crop(_read_rgb(p), CROP) for p in chosen])


@pytest.fixture(scope="module")
def photos_lab_ref(photos_u8: np.ndarray) -> np.ndarray:
    """scikit-image's Lab of the photos (float64 [B, H, W, 3]): the reference."""
    return rgb2lab(photos_u8 / 255.0)


def _to_bchw(array_bhwc: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array_bhwc)).permute(0, 3, 1, 2).float().to(device)


def _to_bhwc(tensor_bchw: torch.Tensor) -> np.ndarray:
    return tensor_bchw.detach().permute(0, 2, 3, 1).cpu().double().numpy()


# --- rgb_to_lab / lab_to_rgb against scikit-image ------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_rgb_to_lab_matches_skimage_on_photos(
    device: str, photos_u8: np.ndarray, photos_lab_ref: np.ndarray
) -> None:
    rgb = _to_bchw(photos_u8 / 255.0, device)
    lab = color.rgb_to_lab(rgb)
    assert lab.shape == rgb.shape and lab.dtype == torch.float32
    assert lab.device.type == device
    delta = np.abs(_to_bhwc(lab) - photos_lab_ref)
    mean, worst = delta.mean(), delta.max()
    assert mean < 0.05, f"mean |dLab| {mean:.3g} (max {worst:.3g}) vs skimage rgb2lab"
    # Float32 maths alone is ~1e-4; a wrong constant or white point would blow far past this.
    assert worst < 0.5, f"max |dLab| {worst:.3g} (mean {mean:.3g}) vs skimage rgb2lab"
    # Per channel as well: L in [0, 100], and the photos do carry colour (a, b not all ~0).
    assert np.abs(photos_lab_ref[..., 1:]).max() > 20


def test_rgb_to_lab_accepts_unbatched_and_matches_batched(photos_u8: np.ndarray) -> None:
    rgb = _to_bchw(photos_u8[:2] / 255.0, "cpu")
    batched = color.rgb_to_lab(rgb)
    single = color.rgb_to_lab(rgb[1])
    assert single.shape == (3, CROP, CROP)
    torch.testing.assert_close(single, batched[1])


def test_rgb_to_lab_primaries_and_neutrals_match_skimage() -> None:
    # Black, white, mid grey and the six saturated primaries/secondaries: the gamut's corners.
    swatches = np.array(
        [[0, 0, 0], [1, 1, 1], [0.5, 0.5, 0.5],
         [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]],
        dtype=np.float64,
    )
    ref = rgb2lab(swatches[None])[0]
    batch = torch.from_numpy(swatches.T[None, :, None, :]).float()  # [1, 3, 1, 9]
    got = color.rgb_to_lab(batch)[0, :, 0, :].T.double().numpy()
    np.testing.assert_allclose(got, ref, atol=1e-2)
    # Known answers by definition of D65 Lab: white is L=100, black L=0, both neutral.
    np.testing.assert_allclose(got[0], [0.0, 0.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(got[1], [100.0, 0.0, 0.0], atol=1e-2)


@pytest.mark.parametrize("device", DEVICES)
def test_lab_to_rgb_matches_skimage_on_photo_lab(device: str, photos_lab_ref: np.ndarray) -> None:
    rgb = color.lab_to_rgb(_to_bchw(photos_lab_ref, device))
    assert rgb.shape == (N_PHOTOS, 3, CROP, CROP) and rgb.dtype == torch.float32
    ref = lab2rgb(photos_lab_ref)
    delta = np.abs(_to_bhwc(rgb) - ref)
    assert delta.max() < 1e-3, (
        f"max |dRGB| {delta.max():.3g} (mean {delta.mean():.3g}) vs skimage lab2rgb")


def test_lab_to_rgb_clips_out_of_gamut_like_skimage() -> None:
    # Lab values drawn over the full a/b box: most are outside sRGB and must be clipped to [0, 1].
    rng = np.random.default_rng(7)
    lab = np.stack(
        [rng.uniform(0, 100, (48, 48)), rng.uniform(-128, 127, (48, 48)),
         rng.uniform(-128, 127, (48, 48))], axis=-1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about the clipping it does
        ref = lab2rgb(lab)
    got = _to_bhwc(color.lab_to_rgb(_to_bchw(lab[None], "cpu")))[0]
    assert got.min() >= 0.0 and got.max() <= 1.0
    assert (ref == 0).mean() > 0.1 and (ref == 1).mean() > 0.05  # really out of gamut
    np.testing.assert_allclose(got, ref, atol=1e-3)


# --- round trips on in-gamut colours ----------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_round_trip_on_photos_within_one_level(device: str, photos_u8: np.ndarray) -> None:
    rgb = _to_bchw(photos_u8 / 255.0, device)
    back = color.lab_to_rgb(color.rgb_to_lab(rgb))
    worst = (back - rgb).abs().max().item()
    assert worst <= ONE_LEVEL, f"rgb -> lab -> rgb max error {worst * 255:.3g} levels"


@pytest.mark.parametrize("device", DEVICES)
def test_round_trip_on_random_rgb_cube_within_one_level(device: str) -> None:
    generator = torch.Generator().manual_seed(0)
    rgb = torch.rand(4, 3, 64, 64, generator=generator)  # 16k uniform samples of the RGB cube
    corners = torch.tensor(
        [[r, g, b] for r in (0.0, 1.0) for g in (0.0, 1.0) for b in (0.0, 1.0)]
    ).T.reshape(1, 3, 1, 8)
    for sample in (rgb, corners):
        sample = sample.to(device)
        back = color.lab_to_rgb(color.rgb_to_lab(sample))
        worst = (back - sample).abs().max().item()
        assert worst <= ONE_LEVEL, f"rgb -> lab -> rgb max error {worst * 255:.3g} levels"


# --- normalisation ----------------------------------------------------------------------------


def test_normalize_l_known_points_and_inverse() -> None:
    l_values = torch.tensor([0.0, 50.0, 100.0, 25.0])
    torch.testing.assert_close(color.normalize_l(l_values), torch.tensor([-1.0, 0.0, 1.0, -0.5]))
    torch.testing.assert_close(color.denormalize_l(torch.tensor([-1.0, 0.0, 1.0, -0.5])), l_values)
    dense = torch.linspace(0, 100, 1001)
    torch.testing.assert_close(color.denormalize_l(color.normalize_l(dense)), dense)


def test_normalize_ab_divides_by_110_and_clamps() -> None:
    ab = torch.tensor([0.0, 55.0, -55.0, 110.0, -110.0, 121.0, -130.0, 1000.0])
    expected = torch.tensor([0.0, 0.5, -0.5, 1.0, -1.0, 1.0, -1.0, 1.0])
    torch.testing.assert_close(color.normalize_ab(ab), expected)


def test_denormalize_ab_scales_and_clamps_overshoot() -> None:
    ab_norm = torch.tensor([0.0, 0.5, -0.5, 1.0, -1.0, 1.3, -2.0])
    expected = torch.tensor([0.0, 55.0, -55.0, 110.0, -110.0, 110.0, -110.0])
    torch.testing.assert_close(color.denormalize_ab(ab_norm), expected)
    inside = torch.linspace(-1, 1, 201)
    torch.testing.assert_close(color.normalize_ab(color.denormalize_ab(inside)), inside)


@pytest.mark.parametrize("device", DEVICES)
def test_model_input_output_round_trip_on_photos(
    device: str, photos_u8: np.ndarray, photos_lab_ref: np.ndarray
) -> None:
    rgb = _to_bchw(photos_u8 / 255.0, device)
    l_norm, ab_norm = color.rgb_to_model_input(rgb)
    assert l_norm.shape == (N_PHOTOS, 1, CROP, CROP) and ab_norm.shape == (N_PHOTOS, 2, CROP, CROP)
    assert l_norm.min() >= -1.0 and l_norm.max() <= 1.0
    assert ab_norm.min() >= -1.0 and ab_norm.max() <= 1.0
    # The normalised channels are the reference Lab, scaled by the documented constants.
    ref_l = photos_lab_ref[..., 0] / 50.0 - 1.0
    ref_ab = np.clip(photos_lab_ref[..., 1:] / 110.0, -1.0, 1.0)
    np.testing.assert_allclose(_to_bhwc(l_norm)[..., 0], ref_l, atol=1e-3)
    np.testing.assert_allclose(_to_bhwc(ab_norm), ref_ab, atol=1e-3)

    back = color.model_output_to_rgb(l_norm, ab_norm)
    # Only pixels with |a|, |b| <= 110 survive the clamp losslessly; the rest are compared
    # nowhere (sRGB itself peaks at |a| ~ 98, |b| ~ 108, so in practice none are excluded).
    within = np.all(np.abs(photos_lab_ref[..., 1:]) <= 110.0, axis=-1)  # [B, H, W]
    assert within.mean() > 0.99, f"{(~within).sum()} photo pixels have |ab| > 110"
    error = np.abs(_to_bhwc(back) - photos_u8 / 255.0).max(axis=-1)  # [B, H, W]
    worst = error[within].max()
    assert worst <= ONE_LEVEL, f"model round trip max error {worst * 255:.3g} levels"


# --- image <-> tensor -------------------------------------------------------------------------


def test_image_to_tensor_and_back_is_exact_on_photo() -> None:
    original = _read_rgb(PHOTOS[0])
    tensor = color.image_to_tensor(Image.fromarray(original))
    assert tensor.shape == (3, original.shape[0], original.shape[1])
    assert tensor.dtype == torch.float32
    assert tensor.min() >= 0.0 and tensor.max() <= 1.0
    np.testing.assert_allclose(tensor.permute(1, 2, 0).numpy(), original / 255.0, atol=1e-7)
    image = color.tensor_to_image(tensor)
    assert image.mode == "RGB" and image.size == (original.shape[1], original.shape[0])
    np.testing.assert_array_equal(np.asarray(image), original)


def test_image_to_tensor_converts_grayscale_to_three_channels() -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    tensor = color.image_to_tensor(Image.fromarray(gray))
    assert tensor.shape == (3, 3, 4)
    for channel in range(3):
        np.testing.assert_allclose(tensor[channel].numpy(), gray / 255.0, atol=1e-7)


def test_tensor_to_image_rounds_and_clamps() -> None:
    values = torch.tensor([0.4, 0.6, 127.4, 127.6, 254.6, -30.0, 300.0, 255.0]) / 255.0
    tensor = values.reshape(1, 1, 8).expand(3, 1, 8)
    array = np.asarray(color.tensor_to_image(tensor))
    assert array.shape == (1, 8, 3) and array.dtype == np.uint8
    np.testing.assert_array_equal(array[0, :, 0], [0, 1, 127, 128, 255, 0, 255, 255])
    np.testing.assert_array_equal(array[..., 0], array[..., 2])


# --- load_image / encode_image --------------------------------------------------------------


def _png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def test_load_image_grayscale_png_becomes_rgb() -> None:
    gray = (np.arange(30 * 20, dtype=np.uint32).reshape(20, 30) % 256).astype(np.uint8)
    img = color.load_image(_png_bytes(Image.fromarray(gray)))
    assert img.mode == "RGB" and img.size == (30, 20)
    array = np.asarray(img)
    for channel in range(3):
        np.testing.assert_array_equal(array[..., channel], gray)


def test_load_image_rgba_png_becomes_rgb_keeping_colour() -> None:
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, size=(16, 24, 4), dtype=np.uint8)
    rgba[..., 3] = 255  # opaque: the colour values must come through untouched
    img = color.load_image(_png_bytes(Image.fromarray(rgba)))
    assert img.mode == "RGB" and img.size == (24, 16)
    np.testing.assert_array_equal(np.asarray(img), rgba[..., :3])


def test_load_image_honours_exif_orientation_6() -> None:
    # 40 wide x 20 high: left half red, right half blue. Orientation 6 means "rotate 90 degrees
    # clockwise to display", so the decoded image is 20 wide x 40 high with red on top.
    array = np.zeros((20, 40, 3), dtype=np.uint8)
    array[:, :20, 0] = 255
    array[:, 20:, 2] = 255
    source = Image.fromarray(array)
    exif = source.getexif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    source.save(buffer, format="JPEG", quality=95, exif=exif.tobytes())

    img = color.load_image(buffer.getvalue())
    assert img.mode == "RGB"
    assert img.size == (20, 40)
    decoded = np.asarray(img).astype(int)
    top, bottom = decoded[:15].reshape(-1, 3).mean(0), decoded[25:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 50, f"top should be red, got {top}"
    assert bottom[2] > 200 and bottom[0] < 50, f"bottom should be blue, got {bottom}"


def test_load_image_reads_real_fixture_bytes() -> None:
    img = color.load_image(PHOTOS[0].read_bytes(), name=PHOTOS[0].name)
    assert img.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(img), _read_rgb(PHOTOS[0]))


@pytest.mark.parametrize(
    "data",
    [b"this is not an image at all", b"", PHOTOS[0].read_bytes()[:2000]],
    ids=["garbage", "empty", "truncated_jpeg"],
)
def test_load_image_unreadable_raises_value_error_naming_source(data: bytes) -> None:
    name = "s3://bucket/broken [1].jpg"
    with pytest.raises(ValueError, match=re.escape(name)):
        color.load_image(data, name=name)


def test_encode_image_png_round_trips_exactly() -> None:
    original = _read_rgb(PHOTOS[1])
    data = color.encode_image(Image.fromarray(original), suffix=".png", quality=90)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    np.testing.assert_array_equal(np.asarray(color.load_image(data)), original)


@pytest.mark.parametrize("suffix", [".jpg", ".JPG", ".jpeg"])
def test_encode_image_jpeg_produces_jpeg_honouring_quality(suffix: str) -> None:
    original = _read_rgb(PHOTOS[1])
    high = color.encode_image(Image.fromarray(original), suffix=suffix, quality=95)
    low = color.encode_image(Image.fromarray(original), suffix=suffix, quality=20)
    assert high.startswith(b"\xff\xd8") and low.startswith(b"\xff\xd8")
    assert len(low) < len(high)
    decoded = np.asarray(color.load_image(high)).astype(float)
    assert decoded.shape == original.shape
    assert np.abs(decoded - original).mean() < 3.0  # lossy, but close at quality 95


def test_load_image_scales_16_bit_grayscale_instead_of_clipping():
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="PNG")
    decoded = np.asarray(color.load_image(buffer.getvalue(), name="scan16.png"))
    assert np.array_equal(decoded[..., 0], ramp >> 8)
    assert np.array_equal(decoded[..., 0], decoded[..., 2])


@pytest.mark.parametrize("peak", [70_000, 5_000_000, 2**31 - 1])
def test_load_image_scales_32_bit_grayscale_by_its_real_range(peak):
    # 32-bit 'I' scans are not 16-bit: a ramp to `peak` must span 0..255, not clip or go dark.
    ramp = np.linspace(0, peak, 64 * 64).reshape(64, 64).astype(np.int32)
    buffer = io.BytesIO()
    Image.fromarray(ramp, mode="I").save(buffer, format="TIFF")
    decoded = np.asarray(color.load_image(buffer.getvalue(), name="scan32.tif"))[..., 0]
    expected = np.rint(ramp / float(ramp.max()) * 255)
    assert np.abs(decoded.astype(float) - expected).max() <= 1
    assert decoded.min() == 0 and decoded.max() == 255


def test_load_image_keeps_8_bit_levels_in_32_bit_containers():
    levels = np.tile(np.arange(0, 200, dtype=np.int32), (8, 1))  # values 0..199 in an 'I' image
    buffer = io.BytesIO()
    Image.fromarray(levels, mode="I").save(buffer, format="TIFF")
    decoded = np.asarray(color.load_image(buffer.getvalue(), name="i8.tif"))[..., 0]
    assert np.array_equal(decoded, levels.astype(np.uint8))
    floats = (levels / 255.0).astype(np.float32)  # 'F' in [0, 1]
    buffer = io.BytesIO()
    Image.fromarray(floats, mode="F").save(buffer, format="TIFF")
    decoded = np.asarray(color.load_image(buffer.getvalue(), name="f.tif"))[..., 0]
    assert np.array_equal(decoded, levels.astype(np.uint8))


# --- Issue 6 (speed): per-photo Lab of dataset preparation ---------------------------------


def test_linear_to_lab_matches_skimage_on_photos_every_grey_and_the_primaries(
        photos_u8: np.ndarray, photos_lab_ref: np.ndarray) -> None:
    for rgb, reference in zip(photos_u8, photos_lab_ref, strict=True):
        lab = color.linear_to_lab(color.srgb8_to_linear(np.ascontiguousarray(rgb)))
        assert lab.shape == rgb.shape and lab.dtype == np.float32
        assert np.abs(lab - reference).max() < 0.05
    greys = np.arange(256, dtype=np.uint8)[None, :, None].repeat(3, axis=2)  # [1, 256, 3]
    corners = np.array([[[r, g, b] for r in (0, 255) for g in (0, 255) for b in (0, 255)]],
                       dtype=np.uint8)  # [1, 8, 3]: black, the primaries, their mixes, white
    for rgb in (greys, corners):
        lab = color.linear_to_lab(color.srgb8_to_linear(rgb))
        assert np.abs(lab - rgb2lab(rgb)).max() < 0.05


def test_linear_to_lab_names_what_it_expects() -> None:
    with pytest.raises(ValueError, match="float32"):
        color.linear_to_lab(np.zeros((4, 4, 3), dtype=np.float64))

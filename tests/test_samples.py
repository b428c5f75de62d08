"""Photo -> sample: fast Lab against scikit-image, the storage format's colour error,
draft decoding, and the curation filters on real and toned photos."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage.color import deltaE_ciede2000, rgb2lab

from colorization import color
from colorization.samples import (
    FilterConfig,
    convert_chunk,
    convert_many,
    crop_scores,
    decode_codes,
    decode_crop,
    decode_lab,
    encode_codes,
    encode_lab,
    filter_scores,
    sample_codes,
    sample_lab,
)

FILTERS = FilterConfig(image_size=64, min_side=64, min_mean_chroma=3.0, min_hue_spread=3.0)


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _toned(img: Image.Image, tint: tuple[float, float, float]) -> Image.Image:
    gray = np.asarray(img.convert("L"), dtype=np.float64)[..., None] / 255
    return Image.fromarray(np.rint(gray * np.array(tint) * 255).astype(np.uint8), "RGB")


def test_fast_lab_matches_scikit_image(fixture_photos):
    crops = np.stack([decode_crop(p.read_bytes(), name=p.name, image_size=48)
                      for p in sorted(fixture_photos.glob("*.jpg"))[:6]])  # [6, 48, 48, 3]
    every_level = np.arange(256, dtype=np.uint8)[None, :, None].repeat(3, axis=2)  # [1, 256, 3]
    lab = color.srgb8_to_lab(crops)
    assert lab.shape == (6, 3, 48, 48) and lab.dtype == np.float32
    for got, rgb in zip(lab, crops, strict=True):
        assert np.abs(got - rgb2lab(rgb).transpose(2, 0, 1)).max() < 2e-3
    levels = color.srgb8_to_lab(every_level[None])[0]  # every grey level, the LUT's full range
    assert np.abs(levels - rgb2lab(every_level).transpose(2, 0, 1)).max() < 2e-3


def test_storage_format_costs_under_half_a_ciede2000(fixture_photos):
    errors, sizes = [], []
    for path in sorted(fixture_photos.glob("*.jpg"))[:8]:
        crop = decode_crop(path.read_bytes(), name=path.name, image_size=160)
        lab = rgb2lab(crop).astype(np.float32).transpose(2, 0, 1)  # the float reference
        data = encode_lab(lab)
        stored = decode_lab(data)
        assert decode_lab(data).tobytes() == stored.tobytes()  # lossless container
        errors.append(deltaE_ciede2000(lab.transpose(1, 2, 0), stored.transpose(1, 2, 0)).mean())
        sizes.append(len(data))
    assert np.mean(errors) < 0.5 and max(errors) < 0.6
    assert np.mean(sizes) < 100_000 * (160 / 256) ** 2  # the 100 KB budget, scaled to 160 px


def test_codes_round_trip_exactly_and_the_stored_lab_is_the_quantised_reference(fixture_photos):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (3, 33, 33), dtype=np.uint8)  # wraps mod 256 everywhere
    extremes = np.zeros((3, 8, 8), dtype=np.uint8)
    extremes[:, ::2] = 255
    for codes in (noise, extremes):
        assert np.array_equal(decode_codes(encode_codes(codes)), codes)
    path = sorted(fixture_photos.glob("*.jpg"))[2]
    crop = decode_crop(path.read_bytes(), name=path.name, image_size=64)
    reference = rgb2lab(crop)  # float64 [64, 64, 3]
    expected = np.rint(np.stack([reference[..., 0] * 255 / 100, reference[..., 1] + 128,
                                 reference[..., 2] + 128]))  # the documented codes
    stored = convert_chunk([("p.jpg", path.read_bytes(), None)], FILTERS)[0].sample
    assert stored is not None
    codes = decode_codes(stored)
    assert codes.shape == (3, 64, 64) and codes.dtype == np.uint8
    # Rounding of OpenCV's Lab (within 0.02 of the reference): at most one code apart.
    assert np.abs(codes - expected).max() <= 1 and np.mean(codes == expected) > 0.95
    assert np.array_equal(sample_lab({"lab.zst": stored}), decode_lab(stored))


def test_format_2_webp_samples_decode_to_the_same_codes():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, (3, 16, 16), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(codes.transpose(1, 2, 0), mode="RGB").save(buffer, format="WEBP",
                                                                lossless=True)
    webp = {"lab.webp": buffer.getvalue()}
    assert np.array_equal(sample_codes(webp), codes)
    lab = sample_lab(webp)
    assert np.allclose(lab[0], codes[0].astype(np.float64) * 100 / 255, atol=1e-4)
    assert np.array_equal(lab[1:], codes[1:].astype(np.float32) - 128)
    legacy = io.BytesIO()
    np.save(legacy, lab.astype(np.float16))
    assert sample_codes({"lab.npy": legacy.getvalue()}) is None
    assert np.allclose(sample_lab({"lab.npy": legacy.getvalue()}), lab, atol=0.05)


@pytest.mark.parametrize("data", [b"", b"not zstd at all", encode_codes(
    np.zeros((3, 4, 4), np.uint8))[:-3]])
def test_a_broken_sample_is_a_value_error(data):
    with pytest.raises(ValueError, match="lab.zst"):
        decode_codes(data)


def test_prepare_scores_are_the_filter_scores_of_the_reference_lab(fixture_photos):
    for path in sorted(fixture_photos.glob("*.jpg"))[:4]:
        rgb = decode_crop(path.read_bytes(), name=path.name, image_size=64)
        fast, reference = crop_scores(rgb), filter_scores(rgb, rgb2lab(rgb).transpose(2, 0, 1))
        assert fast["mean_chroma"] == pytest.approx(reference["mean_chroma"], abs=0.01)
        assert fast["hue_spread"] == pytest.approx(reference["hue_spread"], abs=1e-3)


def test_the_fast_jpeg_path_gives_pillows_pixels_and_honours_exif_rotation(fixture_photos,
                                                                           monkeypatch):
    def even_margin(photo) -> bool:  # rotated, an odd margin moves the centre crop by 1 px
        with Image.open(photo) as img:
            return (img.width - img.height) % 2 == 0

    path = next(p for p in sorted(fixture_photos.glob("*.jpg")) if even_margin(p))
    size = 96  # over half the short side (170 px): no draft mode, so the fast path
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as opened:
        assert color.decode_upright_jpeg(data, opened) is not None  # takes the fast path
    fast = decode_crop(data, name=path.name, image_size=size)
    with Image.open(path) as img:
        exif = img.getexif()
        exif[0x0112] = 6  # EXIF orientation: rotate 90 degrees clockwise to display
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=90, exif=exif.tobytes())
        rotated = buffer.getvalue()
        upright = _jpeg(img.transpose(Image.Transpose.ROTATE_270), quality=90)
    monkeypatch.setattr(color, "decode_upright_jpeg", lambda data, opened: None)  # Pillow
    assert np.array_equal(decode_crop(data, name=path.name, image_size=size), fast)
    monkeypatch.undo()
    turned = decode_crop(rotated, name="rotated.jpg", image_size=size).astype(float)
    plain = decode_crop(upright, name="upright.jpg", image_size=size).astype(float)
    assert np.abs(turned - plain).mean() < 3  # the same view (JPEG noise of two encodings)
    unturned = np.rot90(decode_crop(upright, name="u.jpg", image_size=size), 1).astype(float)
    assert np.abs(turned - unturned).mean() > 10  # ...and not the stored, unrotated one


def test_large_jpegs_decode_in_draft_mode_close_to_a_full_decode(fixture_photos):
    path = sorted(fixture_photos.glob("*.jpg"))[3]
    with Image.open(path) as img:
        big = img.convert("RGB").resize((img.width * 4, img.height * 4), Image.Resampling.BICUBIC)
    data = _jpeg(big, quality=95)
    drafted = decode_crop(data, name="big.jpg", image_size=32).astype(np.float64)
    side = min(big.size)
    box = ((big.width - side) // 2, (big.height - side) // 2)
    full = np.asarray(big.resize((32, 32), Image.Resampling.BICUBIC,
                                 box=(*box, box[0] + side, box[1] + side)), dtype=np.float64)
    assert drafted.shape == (32, 32, 3)
    assert np.abs(drafted - full).mean() < 3.0  # DCT scaling vs bicubic: a few levels


def test_filters_drop_gray_toned_small_and_broken_photos_keep_colour(fixture_photos):
    photos = sorted(fixture_photos.glob("*.jpg"))
    with Image.open(photos[0]) as img:
        colour = img.convert("RGB")
    items = [(p.name, p.read_bytes(), None) for p in photos]  # all 40 real colour photos
    items += [("gray.jpg", _jpeg(colour.convert("L")), None),
              ("sepia.jpg", _jpeg(_toned(colour, (1.0, 0.8, 0.6))), None),
              ("cyan.jpg", _jpeg(_toned(colour, (0.7, 0.85, 1.0))), None),
              ("green.jpg", _jpeg(_toned(colour, (0.75, 1.0, 0.7))), None),
              ("small.jpg", _jpeg(colour.resize((50, 40))), None),
              ("cut.jpg", _jpeg(colour)[:2000], None),
              ("wrong-size.jpg", _jpeg(colour), (colour.width + 1, colour.height)),
              ("fetch-failed.jpg", "mirror said 500", None)]
    outcomes = {o.id: o for o in convert_many(items, FILTERS, workers=2, chunk=7)}
    assert [o.id for o in convert_many(items, FILTERS, workers=2, chunk=7)] == [i[0] for i in items]
    reasons = {k: o.reason for k, o in outcomes.items() if o.reason}
    assert reasons == {"gray.jpg": "grayscale", "sepia.jpg": "single_tint",
                       "cyan.jpg": "single_tint", "green.jpg": "single_tint",
                       "small.jpg": "too_small", "cut.jpg": "unreadable",
                       "wrong-size.jpg": "size_mismatch", "fetch-failed.jpg": "unreadable"}
    kept = [o for o in outcomes.values() if o.reason is None]
    assert len(kept) == 40 and all(o.sample and o.scores for o in kept)
    assert outcomes["cut.jpg"].scores is None and outcomes["sepia.jpg"].scores is not None
    # Worker processes give the very bytes an inline conversion gives.
    inline = {o.id: o.sample for o in convert_chunk(items[:5], FILTERS)}
    assert all(outcomes[k].sample == v for k, v in inline.items())


def test_staged_samples_are_the_same_bytes_one_file_per_chunk(fixture_photos, tmp_path):
    photos = sorted(fixture_photos.glob("*.jpg"))[:9]
    items = [(p.name, p.read_bytes(), None) for p in photos] + [("cut.jpg", b"\xff\xd8", None)]
    inline = convert_chunk(items, FILTERS)
    staged = convert_many(items, FILTERS, workers=2, chunk=4, stage=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"chunk-{i:04d}.bin" for i in range(3)]
    for want, got in zip(inline, staged, strict=True):
        assert got.sample is None and got.scores == want.scores
        if want.sample is None:
            assert got.staged is None and got.reason == want.reason
            continue
        name, offset, length = got.staged
        assert (tmp_path / name).read_bytes()[offset:offset + length] == want.sample


@pytest.mark.parametrize("tint", [(1.0, 0.82, 0.6), (0.6, 0.75, 1.0), (1.0, 0.7, 0.9)])
def test_hue_spread_of_a_toned_photo_is_near_zero_and_real_photos_vary(fixture_photos, tint):
    path = sorted(fixture_photos.glob("*.jpg"))[5]
    rgb = decode_crop(path.read_bytes(), name=path.name, image_size=64)
    toned = np.asarray(_toned(Image.fromarray(rgb), tint))
    toned_scores = filter_scores(toned, color.srgb8_to_lab(toned))
    real_scores = filter_scores(rgb, color.srgb8_to_lab(rgb))
    assert toned_scores["hue_spread"] < 1.0 < 3.0 < real_scores["hue_spread"]
    assert toned_scores["mean_chroma"] > 3.0  # not gray: only the hue filter catches it
    gray = np.repeat(rgb.mean(axis=-1, keepdims=True).astype(np.uint8), 3, axis=-1)
    gray_scores = filter_scores(gray, color.srgb8_to_lab(gray))
    assert gray_scores["mean_chroma"] < 0.01 and gray_scores["hue_spread"] == 0.0


def test_local_files_are_read_by_the_converting_process_and_a_missing_one_is_reported(
        fixture_photos, tmp_path):
    path = sorted(fixture_photos.glob("*.jpg"))[0]
    items = [("there.jpg", path, None), ("gone.jpg", tmp_path / "gone.jpg", None)]
    there, gone = convert_many(items, FILTERS, workers=2, chunk=1)
    assert there.reason is None
    assert there.sample == convert_chunk([("b.jpg", path.read_bytes(), None)], FILTERS)[0].sample
    assert gone.reason == "unreadable" and "gone.jpg: cannot read" in gone.detail

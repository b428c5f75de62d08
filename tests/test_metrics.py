"""Tests of colorization.metrics: PSNR against scikit-image, colourfulness against known answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from colorization import metrics

FIXTURES = Path(__file__).parent / "fixtures" / "photos"
PHOTOS = sorted(FIXTURES.glob("*.jpg"))
CROP = 160  # every fixture's short side is >= 160 px

# Built at import time: CUDA is added only where it exists, so nothing is ever skipped.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _photo_batch(indices: list[int]) -> torch.Tensor:
    """Real photos, centre-cropped to CROP x CROP: float32 [B, 3, H, W] in [0, 1]."""
    crops = []
    for index in indices:
        with Image.open(PHOTOS[index]) as img:
            array = np.asarray(img.convert("RGB"))
        height, width = array.shape[:2]
        top, left = (height - CROP) // 2, (width - CROP) // 2
        crops.append(array[top : top + CROP, left : left + CROP])
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0


def _skimage_psnr_per_image(
    pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0
) -> np.ndarray:
    return np.array(
        [
            peak_signal_noise_ratio(t.cpu().numpy(), p.cpu().numpy(), data_range=data_range)
            for p, t in zip(pred, target, strict=True)
        ]
    )


# --- psnr -------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_psnr_matches_skimage_on_random_pairs(device: str) -> None:
    generator = torch.Generator().manual_seed(1)
    target = torch.rand(3, 3, 32, 48, generator=generator)
    # Three noise levels, so the three images have clearly different PSNRs.
    sigma = torch.tensor([0.01, 0.1, 0.3]).view(3, 1, 1, 1)
    pred = (target + sigma * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    got = metrics.psnr(pred.to(device), target.to(device))
    assert got.shape == (3,) and got.dtype == torch.float32 and got.device.type == device
    ref = _skimage_psnr_per_image(pred, target)
    np.testing.assert_allclose(got.cpu().numpy(), ref, atol=1e-3, rtol=0)
    assert got[0] > got[1] > got[2]


@pytest.mark.parametrize("device", DEVICES)
def test_psnr_matches_skimage_on_noisy_photos(device: str) -> None:
    target = _photo_batch([0, 13, 27])
    generator = torch.Generator().manual_seed(2)
    pred = (target + 0.05 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    got = metrics.psnr(pred.to(device), target.to(device))
    assert got.shape == (3,)
    ref = _skimage_psnr_per_image(pred, target)
    np.testing.assert_allclose(got.cpu().numpy(), ref, atol=1e-3, rtol=0)
    # One at a time gives the same values: no mixing across the batch.
    for i in range(3):
        single = metrics.psnr(pred[i : i + 1].to(device), target[i : i + 1].to(device))
        np.testing.assert_allclose(single.cpu().numpy(), ref[i : i + 1], atol=1e-3, rtol=0)


def test_psnr_known_answer_constant_offset() -> None:
    # Every value off by 0.1: MSE = 0.1^2 = 0.01, PSNR = 10 * log10(1^2 / 0.01) = 10 * 2 = 20 dB.
    target = torch.linspace(0.0, 0.9, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8)
    pred = target + 0.1
    np.testing.assert_allclose(metrics.psnr(pred, target).numpy(), [20.0, 20.0], atol=1e-4, rtol=0)
    # Same offset in the other direction: PSNR is symmetric.
    np.testing.assert_allclose(metrics.psnr(target, pred).numpy(), [20.0, 20.0], atol=1e-4, rtol=0)


def test_psnr_known_answers_other_ranges() -> None:
    # All-black vs all-white: MSE = 1, PSNR = 10 * log10(1 / 1) = 0 dB.
    black, white = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    np.testing.assert_allclose(metrics.psnr(black, white).numpy(), [0.0], atol=1e-6, rtol=0)
    # 0-255 data, offset 25.5 = a tenth of the range: again 10 * log10(255^2 / 25.5^2) = 20 dB.
    target = torch.full((1, 3, 4, 4), 100.0)
    got = metrics.psnr(target + 25.5, target, data_range=255.0)
    np.testing.assert_allclose(got.numpy(), [20.0], atol=1e-4, rtol=0)


def test_psnr_identical_images_capped() -> None:
    images = _photo_batch([5, 6])
    got = metrics.psnr(images, images.clone())
    assert torch.isfinite(got).all()
    np.testing.assert_array_equal(got.numpy(), [metrics.MAX_PSNR_DB, metrics.MAX_PSNR_DB])
    # A near-perfect pair stays below the cap and is not clipped to it.
    nudged = images.clone()
    nudged[0, 0, 0, 0] += 1.0 / 255.0
    assert metrics.psnr(nudged, images)[0] < metrics.MAX_PSNR_DB
    assert metrics.psnr(nudged, images)[1] == metrics.MAX_PSNR_DB


def test_psnr_mismatched_shapes_raise() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.psnr(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 9))
    with pytest.raises(ValueError):
        metrics.psnr(torch.zeros(1, 3, 8, 8), torch.zeros(2, 3, 8, 8))


# --- colorfulness -----------------------------------------------------------------------------


def _colorfulness_reference(rgb_u8: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003), written independently in numpy on one [H, W, 3] 0-255 image."""
    r, g, b = (rgb_u8[..., i].astype(np.float64).ravel() for i in range(3))
    rg = r - g
    yb = 0.5 * (r + g) - b
    sigma_rgyb = math.sqrt(np.std(rg) ** 2 + np.std(yb) ** 2)  # np.std: population (ddof=0)
    mu_rgyb = math.sqrt(np.mean(rg) ** 2 + np.mean(yb) ** 2)
    return sigma_rgyb + 0.3 * mu_rgyb


@pytest.mark.parametrize("device", DEVICES)
def test_colorfulness_of_gray_is_zero(device: str) -> None:
    # R = G = B everywhere, varying across the image (a ramp): rg = 0 and yb = 0 exactly.
    ramp = torch.linspace(0, 1, 64 * 48).reshape(1, 1, 48, 64)
    gray = torch.cat([ramp.expand(1, 3, 48, 64), torch.full((1, 3, 48, 64), 0.37)])
    got = metrics.colorfulness(gray.to(device))
    assert got.shape == (2,)
    np.testing.assert_allclose(got.cpu().numpy(), [0.0, 0.0], atol=1e-6)


def test_colorfulness_known_answer_half_red_half_blue() -> None:
    # Left half pure red (255, 0, 0), right half pure blue (0, 0, 255), equal pixel counts.
    #   red  pixel: rg = 255 - 0 = 255,  yb = (255 + 0) / 2 - 0 = 127.5
    #   blue pixel: rg = 0 - 0   = 0,    yb = (0 + 0) / 2 - 255  = -255
    # Two equal-sized groups {x, y}: mean = (x + y) / 2, population std = |x - y| / 2.
    #   rg: mean = (255 + 0) / 2 = 127.5,          std = 255 / 2 = 127.5
    #   yb: mean = (127.5 - 255) / 2 = -63.75,     std = (127.5 + 255) / 2 = 191.25
    # sigma_rgyb = sqrt(127.5^2 + 191.25^2) = sqrt(16256.25 + 36576.5625) = sqrt(52832.8125)
    # mu_rgyb    = sqrt(127.5^2 + 63.75^2)  = sqrt(16256.25 + 4064.0625)  = sqrt(20320.3125)
    # M = sigma_rgyb + 0.3 * mu_rgyb ~= 229.854 + 0.3 * 142.549 ~= 272.619
    expected = math.sqrt(52832.8125) + 0.3 * math.sqrt(20320.3125)
    image = torch.zeros(1, 3, 10, 20)
    image[0, 0, :, :10] = 1.0  # red half
    image[0, 2, :, 10:] = 1.0  # blue half
    got = metrics.colorfulness(image)
    assert got.shape == (1,)
    np.testing.assert_allclose(got.numpy(), [expected], rtol=1e-6)
    assert abs(expected - 272.619) < 1e-3  # the hand arithmetic above


def test_colorfulness_known_answer_uniform_red() -> None:
    # Uniform (255, 0, 0): no spread, so sigma_rgyb = 0; rg = 255, yb = 127.5 everywhere.
    # M = 0.3 * sqrt(255^2 + 127.5^2) = 0.3 * sqrt(65025 + 16256.25) = 0.3 * sqrt(81281.25)
    #   ~= 0.3 * 285.0987 ~= 85.5296
    image = torch.zeros(1, 3, 7, 5)
    image[:, 0] = 1.0
    np.testing.assert_allclose(metrics.colorfulness(image).numpy(),
                               [0.3 * math.sqrt(81281.25)], rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_colorfulness_matches_numpy_reference_on_photos(device: str) -> None:
    indices = [0, 4, 9, 15, 22, 31]
    batch = _photo_batch(indices)
    got = metrics.colorfulness(batch.to(device))
    assert got.shape == (len(indices),) and got.dtype == torch.float32
    u8 = (batch.permute(0, 2, 3, 1).numpy() * 255.0).round().astype(np.uint8)
    ref = np.array([_colorfulness_reference(image) for image in u8])
    assert ref.min() > 1.0 and ref.std() > 1.0  # real colour, and the photos differ
    np.testing.assert_allclose(got.cpu().numpy(), ref, rtol=1e-3)


def test_colorfulness_desaturating_a_photo_lowers_it() -> None:
    photo = _photo_batch([9])
    gray = photo.mean(dim=1, keepdim=True).expand_as(photo)
    half = 0.5 * photo + 0.5 * gray
    values = metrics.colorfulness(torch.cat([photo, half, gray]))
    assert values[0] > values[1] > values[2]
    assert values[2] < 1e-3


# --- ssim -------------------------------------------------------------------------------------


def test_ssim_matches_skimage_on_noisy_photos() -> None:
    from skimage.metrics import structural_similarity

    target = _photo_batch([1, 8, 20])[:, :, :64, :80]
    generator = torch.Generator().manual_seed(3)
    sigma = torch.tensor([0.02, 0.1, 0.3]).view(3, 1, 1, 1)
    pred = (target + sigma * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    got = metrics.ssim(pred, target)
    ref = [structural_similarity(t.numpy(), p.numpy(), data_range=1, channel_axis=0,
                                 gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
           for p, t in zip(pred, target, strict=True)]
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-4)
    assert got[0] > got[1] > got[2]


def test_ssim_known_answers() -> None:
    image = _photo_batch([2])
    assert metrics.ssim(image, image.clone()).item() == pytest.approx(1.0, abs=1e-5)
    # Two constant images a and b: SSIM = (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01)^2.
    a, b, c1 = 0.2, 0.6, 0.01**2
    got = metrics.ssim(torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b))
    assert got.item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-4)


# --- ciede2000 --------------------------------------------------------------------------------

# Sharma, Wu and Dalal (2005), "The CIEDE2000 color-difference formula": test data pairs
# (Lab 1, Lab 2, Delta E 2000) from the paper's Table 1 (rows 1, 2, 3, 7, 13, 17, 25).
SHARMA = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, 2.8361, -74.0200), (50.0000, 0.0000, -82.7485), 3.4412),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
]


def test_ciede2000_known_answers_from_sharma() -> None:
    lab1 = np.array([row[0] for row in SHARMA])
    lab2 = np.array([row[1] for row in SHARMA])
    np.testing.assert_allclose(metrics.ciede2000_lab(lab1, lab2), [r[2] for r in SHARMA],
                               atol=1e-4)


def test_ciede2000_of_photos_matches_skimage_and_is_zero_on_identity() -> None:
    from skimage.color import deltaE_ciede2000, rgb2lab

    truth = _photo_batch([3, 11])
    gray = truth.mean(dim=1, keepdim=True).expand_as(truth)
    got = metrics.ciede2000(gray, truth)
    ref = [deltaE_ciede2000(rgb2lab(g.permute(1, 2, 0).numpy().astype(np.float64)),
                            rgb2lab(t.permute(1, 2, 0).numpy().astype(np.float64))).mean()
           for g, t in zip(gray, truth, strict=True)]
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-3)
    assert (got > 1.0).all()
    np.testing.assert_allclose(metrics.ciede2000(truth, truth.clone()).numpy(), 0.0, atol=1e-3)


def test_colorfulness_gap_is_the_absolute_difference() -> None:
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    gray = torch.full((1, 3, 4, 4), 0.5)
    expected = 0.3 * math.sqrt(81281.25)  # the uniform-red known answer above; gray is 0
    np.testing.assert_allclose(metrics.colorfulness_gap(gray, red).numpy(), [expected], rtol=1e-6)
    np.testing.assert_allclose(metrics.colorfulness_gap(red, gray).numpy(), [expected], rtol=1e-6)


# --- summaries and truth statistics -----------------------------------------------------------


def test_mean_interval_known_answer() -> None:
    # 1, 2, 3, 4: mean 2.5, sample sd sqrt(5/3), sem = sd / 2; t(0.975, 3) = 3.182446305...
    mean, low, high = metrics.mean_interval([1, 2, 3, 4])
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert (mean, low, high) == pytest.approx((2.5, 2.5 - half, 2.5 + half), rel=1e-9)
    assert metrics.mean_interval([7.0]) == (7.0, 7.0, 7.0)
    with pytest.raises(ValueError):
        metrics.mean_interval([])


# --- FID --------------------------------------------------------------------------------------


def test_gaussian_frechet_distance_known_answer() -> None:
    # mu_a = 0, mu_b = (1, 2): |diff|^2 = 5. Diagonal covariances diag(1, 4) and diag(4, 1):
    # sqrt(S_a S_b) = diag(2, 2), so the trace term is (1 + 4 - 4) + (4 + 1 - 4) = 2. Total 7.
    got = metrics.gaussian_frechet_distance(np.zeros(2), np.diag([1.0, 4.0]),
                                            np.array([1.0, 2.0]), np.diag([4.0, 1.0]))
    assert got == pytest.approx(7.0, abs=1e-9)


def test_frechet_distance_of_feature_sets() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 5))
    assert metrics.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-6)
    # A shift by c moves only the means: the distance is |c|^2.
    shift = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    assert metrics.frechet_distance(features + shift, features) == pytest.approx(
        float(shift @ shift), abs=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        metrics.frechet_distance(features[:1], features)


def test_frechet_distance_with_fewer_samples_than_dimensions_is_exact() -> None:
    # The SVD shortcut (6 and 7 samples in 10 dimensions) against the matrix square root.
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 10)), rng.normal(1.0, 2.0, size=(7, 10))
    reference = metrics.gaussian_frechet_distance(a.mean(0), np.cov(a, rowvar=False),
                                                  b.mean(0), np.cov(b, rowvar=False))
    assert metrics.frechet_distance(a, b) == pytest.approx(reference, rel=1e-6)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_fid_features_from_a_weights_file(tmp_path) -> None:
    from torchvision.models import inception_v3

    weights = tmp_path / "inception.pth"
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(),
               weights)
    extractor = metrics.FidFeatures(str(weights))
    images = _photo_batch([0, 1])
    got = extractor(images)
    assert got.shape == (2, metrics.FID_FEATURES) and torch.isfinite(got).all()
    torch.testing.assert_close(extractor(images[:1]), got[:1], rtol=1e-4, atol=1e-5)
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="bad.pth: not torchvision Inception-v3 weights"):
        metrics.FidFeatures(str(bad))
    with pytest.raises(FileNotFoundError):
        metrics.FidFeatures(str(tmp_path / "missing.pth"))

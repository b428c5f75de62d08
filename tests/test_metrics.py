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

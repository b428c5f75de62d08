"""Image quality metrics on batched sRGB tensors in [0, 1], [B, 3, H, W]; one value per image."""

from __future__ import annotations

import kornia.metrics
import numpy as np
import scipy.linalg
import scipy.stats
import skimage.color
import torch

from colorization import color

# PSNR of identical images is infinite; cap it so averages stay finite (a common convention).
MAX_PSNR_DB = 100.0


def psnr(pred: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: [B, C, H, W] x2 -> [B]."""
    if pred.shape != target.shape:
        raise ValueError(f"psnr: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    mse = (pred.double() - target.double()).pow(2).flatten(1).mean(dim=1)  # [B]
    value = 10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-20))
    return value.clamp(max=MAX_PSNR_DB).float()


def colorfulness(rgb: torch.Tensor) -> torch.Tensor:
    """Hasler & Suesstrunk (2003) colourfulness M per image: [B, 3, H, W] in [0, 1] -> [B].

    Computed on 0-255 values as in the paper: rg = R - G, yb = (R + G) / 2 - B,
    M = sqrt(std_rg^2 + std_yb^2) + 0.3 * sqrt(mean_rg^2 + mean_yb^2). Gray images give 0.
    """
    values = rgb.double() * 255.0
    red, green, blue = values[:, 0], values[:, 1], values[:, 2]  # each [B, H, W]
    rg = (red - green).flatten(1)
    yb = (0.5 * (red + green) - blue).flatten(1)
    # Population standard deviation, as the paper's formula (and numpy's default) uses.
    std = torch.sqrt(rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False))
    mean = torch.sqrt(rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2)
    return (std + 0.3 * mean).float()


# SSIM as Wang et al. (2004) and scikit-image's `gaussian_weights=True`: an 11x11 Gaussian
# window with sigma 1.5, K1 = 0.01, K2 = 0.03, averaged over the valid (unpadded) area.
SSIM_WINDOW = 11


def ssim(pred: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Mean structural similarity per image over RGB: [B, C, H, W] x2 -> [B] (kornia).

    Images smaller than the 11 px window get a smaller odd window, as scikit-image needs.
    """
    if pred.shape != target.shape:
        raise ValueError(f"ssim: shapes differ, {tuple(pred.shape)} vs {tuple(target.shape)}")
    side = min(pred.shape[-2:])
    window = min(SSIM_WINDOW, side if side % 2 else side - 1)
    ssim_map = kornia.metrics.ssim(pred.float(), target.float(), window, max_val=data_range,
                                   padding="valid")  # [B, C, H - w + 1, W - w + 1]
    return ssim_map.flatten(1).mean(dim=1)


def ciede2000_lab(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference of Lab arrays [..., 3] (scikit-image), same leading shape."""
    return np.asarray(skimage.color.deltaE_ciede2000(lab1, lab2, channel_axis=-1))


def ciede2000(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean CIEDE2000 per image between two sRGB batches in [0, 1]: [B, 3, H, W] x2 -> [B].

    Both are converted to Lab (D65) first; 0 means identical, ~2.3 is a just-noticeable
    difference.
    """
    if pred.shape != target.shape:
        raise ValueError(f"ciede2000: shapes differ, {tuple(pred.shape)} vs "
                         f"{tuple(target.shape)}")
    lab_pred = color.rgb_to_lab(pred).permute(0, 2, 3, 1).double().cpu().numpy()  # [B,H,W,3]
    lab_true = color.rgb_to_lab(target).permute(0, 2, 3, 1).double().cpu().numpy()
    delta = ciede2000_lab(lab_pred, lab_true)  # [B, H, W]
    return torch.from_numpy(delta.reshape(delta.shape[0], -1).mean(axis=1)).float()


def colorfulness_gap(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """|M(pred) - M(target)| per image: how far the colourfulness is from the truth's."""
    return (colorfulness(pred) - colorfulness(target)).abs()


def mean_interval(values: np.ndarray | list[float],
                  confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its Student-t confidence interval.

    One value has no spread to estimate: its interval is the value itself.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("mean_interval: no values")
    mean = float(data.mean())
    if data.size < 2:
        return mean, mean, mean
    sem = float(data.std(ddof=1)) / np.sqrt(data.size)
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, data.size - 1)) * sem
    return mean, mean - half, mean + half


# --- FID: only with a local Inception-v3 weights file (no hub is assumed reachable) ---
FID_IMAGE_SIZE = 299  # Inception v3's input side
FID_FEATURES = 2048  # its pool features


class FidFeatures:
    """Inception-v3 pool features [B, 2048] of sRGB batches, from a torchvision state dict.

    The file is torchvision's `inception_v3` weights (e.g. inception_v3_google-*.pth), loaded
    with `weights_only=True`. FID from these features is comparable between runs of this tool,
    not with the TensorFlow-Inception FID that papers report.
    """

    def __init__(self, weights: str, *, device: str | torch.device = "cpu") -> None:
        from torchvision.models import inception_v3

        model = inception_v3(weights=None, aux_logits=True, init_weights=False,
                             transform_input=False)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except FileNotFoundError:
            raise
        except (RuntimeError, ValueError, OSError, TypeError) as exc:
            raise ValueError(f"{weights}: not torchvision Inception-v3 weights ({exc})") from exc
        model.fc = torch.nn.Identity()  # keep the 2048 pool features
        self.model = model.to(device).eval()

    @torch.no_grad()
    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        """sRGB [B, 3, H, W] in [0, 1] -> features [B, 2048] (float64, CPU)."""
        x = torch.nn.functional.interpolate(rgb.float(), size=(FID_IMAGE_SIZE, FID_IMAGE_SIZE),
                                            mode="bilinear", align_corners=False)
        out = self.model(2.0 * x - 1.0)  # the Google weights expect inputs in [-1, 1]
        return out.double().cpu()


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance of two feature sets [N, D] seen as Gaussians (Heusel et al. 2017):
    |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("frechet_distance: needs at least 2 samples per set")
    if min(len(a), len(b)) >= a.shape[1]:
        return gaussian_frechet_distance(a.mean(0), np.cov(a, rowvar=False),
                                         b.mean(0), np.cov(b, rowvar=False))
    # Fewer samples than dimensions (2048 for Inception): with centred X_a, X_b and
    # S = X^T X / (n - 1), the nonzero eigenvalues of S_a S_b are those of M M^T, where
    # M = X_a X_b^T / sqrt((n_a - 1)(n_b - 1)); so Tr (S_a S_b)^(1/2) is the sum of M's
    # singular values. Exact, and an [n_a, n_b] SVD instead of a [D, D] matrix square root.
    xa, xb = a - a.mean(0), b - b.mean(0)
    scale = np.sqrt((len(a) - 1) * (len(b) - 1))
    trace_sqrt = float(np.linalg.svd(xa @ xb.T / scale, compute_uv=False).sum())
    diff = a.mean(0) - b.mean(0)
    trace_a = float((xa**2).sum()) / (len(a) - 1)
    trace_b = float((xb**2).sum()) / (len(b) - 1)
    return float(diff @ diff + trace_a + trace_b - 2.0 * trace_sqrt)


def gaussian_frechet_distance(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray,
                              cov_b: np.ndarray) -> float:
    """Frechet distance of N(mu_a, cov_a) and N(mu_b, cov_b)."""
    covmean = scipy.linalg.sqrtm(np.atleast_2d(cov_a) @ np.atleast_2d(cov_b))
    covmean = np.real(covmean)  # rounding can leave a tiny imaginary part
    diff = np.atleast_1d(mu_a - mu_b)
    return float(diff @ diff + np.trace(np.atleast_2d(cov_a)) + np.trace(np.atleast_2d(cov_b))
                 - 2.0 * np.trace(covmean))

"""Image quality metrics on batched sRGB tensors in [0, 1], [B, 3, H, W]; one value per image."""

from __future__ import annotations

import torch

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

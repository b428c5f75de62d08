"""The pix2pix 70x70 PatchGAN discriminator (``NLayerDiscriminator``).

It judges a (L, ab) pair, concatenated to 3 channels, and returns one logit per
overlapping patch. There is no sigmoid: train it with ``BCEWithLogitsLoss``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PatchDiscriminator", "receptive_field"]

_KERNEL, _PADDING = 4, 1
_MAX_WIDTH_MULTIPLIER = 8


def _strides(n_layers: int) -> list[int]:
    """Stride of every conv, in order: ``n_layers`` downsampling convs, then two stride-1
    convs (the last width step and the 1-channel logit map)."""
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    return [2] * n_layers + [1, 1]


def receptive_field(n_layers: int) -> int:
    """Side, in input pixels, of the square each output logit sees.

    Walking back from one output pixel, a conv of kernel k and stride s turns a
    span of r pixels into (r - 1) * s + k. n_layers=3 gives 70 (the "70x70"
    PatchGAN), 1 gives 16, 2 gives 34.
    """
    field = 1
    for stride in reversed(_strides(n_layers)):
        field = (field - 1) * stride + _KERNEL
    return field


class PatchDiscriminator(nn.Module):
    """``[B, in, H, W]`` -> ``[B, 1, H', W']`` patch logits.

    For 256x256 and n_layers=3, H' = W' = 30: 256 -> 128 -> 64 -> 32 (stride 2)
    -> 31 -> 30 (stride 1, kernel 4, padding 1).
    """

    def __init__(self, *, in_channels: int = 3, base_channels: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        strides = _strides(n_layers)
        self.n_layers = n_layers
        # Widths ndf * {1, 2, 4, 8, 8, ...}; the final conv maps to one logit channel.
        widths = [base_channels * min(2**i, _MAX_WIDTH_MULTIPLIER) for i in range(n_layers + 1)]

        layers: list[nn.Module] = []
        c_in = in_channels
        for i, (stride, c_out) in enumerate(zip(strides[:-1], widths, strict=True)):
            # The first conv sees raw input and has no norm, so it keeps its bias;
            # the others are followed by BatchNorm, which makes a bias redundant.
            first = i == 0
            layers.append(nn.Conv2d(c_in, c_out, _KERNEL, stride, _PADDING, bias=first))
            if not first:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2))
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, _KERNEL, strides[-1], _PADDING))  # logits
        self.model = nn.Sequential(*layers)

    @property
    def receptive_field(self) -> int:
        """Input pixels (per side) behind each output logit."""
        return receptive_field(self.n_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[B, 3, H, W]`` (L and ab, each in [-1, 1]) -> logits ``[B, 1, H', W']``."""
        return self.model(x)

"""The pix2pix U-Net generator: normalised L in, normalised a*b* out.

Same architecture as ``UnetGenerator`` in junyanz/pytorch-CycleGAN-and-pix2pix
(Isola et al. 2017), written as two flat lists (encoder, decoder) instead of
nested blocks, so the forward pass reads top to bottom.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNetGenerator"]

# Every level halves H and W with a 4x4, stride-2, padding-1 convolution.
_KERNEL, _STRIDE, _PADDING = 4, 2, 1
# Channel widths stop growing at 8 x base_channels (512 for the default 64).
_MAX_WIDTH_MULTIPLIER = 8
# Decoder levels below this index never get dropout (pix2pix: only the 8*ngf ones).
_FIRST_DROPOUT_LEVEL = 4


def _level_widths(num_downs: int, base_channels: int) -> list[int]:
    """Channels after each encoder level: ngf * {1, 2, 4, 8, 8, ...}."""
    return [base_channels * min(2**i, _MAX_WIDTH_MULTIPLIER) for i in range(num_downs)]


class UNetGenerator(nn.Module):
    """pix2pix U-Net: ``[B, in, H, W]`` in [-1, 1] -> ``[B, out, H, W]`` in (-1, 1).

    Encoder level ``i`` maps ``widths[i-1] -> widths[i]`` channels and halves the
    resolution; decoder level ``i`` undoes it. The activated encoder features of
    every level but the innermost are concatenated onto the decoder output of the
    same resolution (the skip connections). Any H, W is accepted: the input is
    replicate-padded up to a multiple of ``2**num_downs`` and the output cropped.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        out_channels: int = 2,
        num_downs: int = 8,
        base_channels: int = 64,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if num_downs < 1:
            raise ValueError(f"num_downs must be >= 1, got {num_downs}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_downs = num_downs
        widths = _level_widths(num_downs, base_channels)
        innermost = num_downs - 1

        # Encoder. Level 0 is a bare conv on the image; inner levels are preceded by
        # LeakyReLU(0.2) (applied in forward, because the skip needs that tensor) and
        # followed by BatchNorm, except the innermost (1x1 for a 2**num_downs input),
        # which pix2pix leaves un-normalised. BatchNorm makes conv biases redundant.
        self.down_act = nn.LeakyReLU(0.2)
        downs: list[nn.Module] = []
        for i in range(num_downs):
            c_in = in_channels if i == 0 else widths[i - 1]
            conv = nn.Conv2d(c_in, widths[i], _KERNEL, _STRIDE, _PADDING, bias=False)
            norm = i not in (0, innermost)
            downs.append(nn.Sequential(conv, nn.BatchNorm2d(widths[i])) if norm else conv)
        self.downs = nn.ModuleList(downs)

        # Decoder, stored innermost first (the order forward runs it). Decoder level i
        # takes widths[i] channels (innermost) or 2 * widths[i] (its own up-path output
        # concatenated with the skip), and returns widths[i-1] channels at twice the
        # resolution; level 0 returns the image channels through tanh.
        ups: list[nn.Module] = []
        for i in reversed(range(num_downs)):
            c_in = widths[i] if i == innermost else 2 * widths[i]
            if i == 0:
                # Outermost: the only conv with a bias, tanh bounds the prediction.
                outer = nn.ConvTranspose2d(c_in, out_channels, _KERNEL, _STRIDE, _PADDING)
                ups.append(nn.Sequential(nn.ReLU(), outer, nn.Tanh()))
                continue
            up = nn.ConvTranspose2d(c_in, widths[i - 1], _KERNEL, _STRIDE, _PADDING, bias=False)
            layers: list[nn.Module] = [nn.ReLU(), up, nn.BatchNorm2d(widths[i - 1])]
            # Dropout (pix2pix's noise source) only in the 8*ngf -> 8*ngf levels that
            # are not innermost: 3 of them for unet_256, 2 for unet_128.
            if dropout > 0 and _FIRST_DROPOUT_LEVEL <= i < innermost:
                layers.append(nn.Dropout(dropout))
            ups.append(nn.Sequential(*layers))
        self.ups = nn.ModuleList(ups)

    @property
    def size_multiple(self) -> int:
        """H and W are padded up to a multiple of this before the network runs."""
        return 2**self.num_downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[B, in, H, W]`` -> ``[B, out, H, W]``, for any H, W >= 1."""
        height, width = x.shape[-2:]
        m = self.size_multiple
        pad_h, pad_w = -height % m, -width % m
        # Replicate (not zero) padding: the border colours continue into the pad, so
        # the network sees no artificial edge next to the real image. Padding on the
        # right/bottom keeps the crop a plain slice.
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")  # [B, in, H', W']

        h = self.downs[0](x)  # [B, w0, H'/2, W'/2]
        skips: list[torch.Tensor] = []
        for down in self.downs[1:]:
            # pix2pix's in-place LeakyReLU means the skip carries the *activated*
            # features; keep that semantics explicitly.
            h = self.down_act(h)  # [B, w(i-1), H'/2**i, W'/2**i]
            skips.append(h)
            h = down(h)  # [B, w(i), H'/2**(i+1), W'/2**(i+1)]
        # h: [B, w(n-1), H'/2**n, W'/2**n], the bottleneck (1x1 for a 2**n input)

        for up in self.ups:
            h = up(h)  # [B, w(i-1), H'/2**i, W'/2**i]  (level 0: [B, out, H', W'])
            if skips:
                h = torch.cat([skips.pop(), h], dim=1)  # [B, 2*w(i-1), ...]

        return h[..., :height, :width]  # [B, out, H, W]

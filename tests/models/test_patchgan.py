"""PatchDiscriminator: logit map shape, parameter count, receptive field by measurement."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from colorization.models import PatchDiscriminator, receptive_field


def measured_receptive_field(n_layers: int, size: int) -> tuple[int, int]:
    """Height and width of the input region that one central output logit depends on."""
    # eval(): BatchNorm uses running statistics, so pixels do not couple through the batch
    # statistics and the gradient is non-zero exactly where the logit can see.
    model = PatchDiscriminator(base_channels=4, n_layers=n_layers).eval()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0),
                    requires_grad=True)
    logits = model(x)  # [1, 1, h, w]
    h, w = logits.shape[-2:]
    logits[0, 0, h // 2, w // 2].backward()
    assert x.grad is not None
    rows, cols = torch.nonzero(x.grad[0].abs().sum(dim=0), as_tuple=True)
    # The region must lie strictly inside the image, or the border would clip it.
    assert rows.min() > 0 and cols.min() > 0 and rows.max() < size - 1 and cols.max() < size - 1
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize(("n_layers", "expected", "size"), [(1, 16, 64), (2, 34, 96), (3, 70, 256)])
def test_receptive_field_measured_equals_computed(n_layers: int, expected: int, size: int) -> None:
    assert measured_receptive_field(n_layers, size) == (expected, expected)
    assert receptive_field(n_layers) == expected


def test_default_is_the_70x70_patchgan() -> None:
    assert receptive_field(3) == 70
    assert PatchDiscriminator().receptive_field == 70


def test_256_input_gives_30x30_logits_without_sigmoid() -> None:
    model = PatchDiscriminator(base_channels=8)
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    logits = model(x)
    assert logits.shape == (2, 1, 30, 30)
    # Logits for BCEWithLogitsLoss: the model must not squash them itself.
    assert not any(isinstance(m, nn.Sigmoid) for m in model.modules())
    loss = nn.BCEWithLogitsLoss()(logits, torch.ones_like(logits))
    loss.backward()
    assert torch.isfinite(loss)


def test_parameter_count_matches_pix2pix() -> None:
    # NLayerDiscriminator(ndf=64, n_layers=3, BatchNorm): conv 3->64 (+bias) 3,136;
    # 64->128 131,072 + BN 256; 128->256 524,288 + BN 512; 256->512 2,097,152 + BN 1,024;
    # 512->1 (+bias) 8,193. Total 2,765,633 for our 3-channel (L, ab) input.
    assert sum(p.numel() for p in PatchDiscriminator().parameters()) == 2_765_633
    # pix2pix's RGB setup feeds 6 channels: 3 * 64 * 16 more weights, the published 2.769 M.
    assert sum(p.numel() for p in PatchDiscriminator(in_channels=6).parameters()) == 2_768_705


def test_small_and_odd_inputs() -> None:
    model = PatchDiscriminator(base_channels=4).eval()
    # 70x70: 35 -> 17 -> 8 (stride 2) -> 7 -> 6 (stride 1).
    assert model(torch.zeros(1, 3, 70, 70)).shape == (1, 1, 6, 6)
    assert model(torch.zeros(1, 3, 37, 53)).shape == (1, 1, 2, 4)


def test_rejects_zero_layers() -> None:
    with pytest.raises(ValueError, match="n_layers"):
        receptive_field(0)
    with pytest.raises(ValueError, match="n_layers"):
        PatchDiscriminator(n_layers=0)

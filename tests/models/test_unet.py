"""UNetGenerator: shapes for any size, bounded output, pix2pix parameter count, skips."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from colorization.models import ModelSpec, UNetGenerator, build_generator


def tiny(num_downs: int = 4, base_channels: int = 8, seed: int = 0) -> nn.Module:
    """A few-thousand-parameter U-Net, eval mode so BatchNorm does not couple pixels."""
    spec = ModelSpec("unet", {"num_downs": num_downs, "base_channels": base_channels})
    return build_generator(spec, seed=seed).eval()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("shape", "num_downs"),
    [
        ((1, 1, 37, 53), 4),  # odd, not multiples of 16
        ((2, 1, 64, 64), 4),  # already a multiple: no padding
        ((1, 1, 5, 7), 4),  # smaller than 2**num_downs
        ((1, 1, 5, 7), 8),  # far smaller than 256: replicate-padded to 256x256
        ((3, 1, 1, 1), 3),  # a single pixel
        ((1, 1, 130, 17), 5),
    ],
)
def test_any_size_gives_same_hw_two_channels_in_tanh_range(
    shape: tuple[int, ...], num_downs: int
) -> None:
    model = tiny(num_downs=num_downs, base_channels=4)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        y = model(x)
    assert y.shape == (shape[0], 2, shape[2], shape[3])
    assert torch.isfinite(y).all()
    assert y.abs().max() < 1.0  # tanh: strictly inside (-1, 1)


def test_train_mode_batch_of_one_forward_and_backward() -> None:
    # Train mode with B=1: the un-normalised 1x1 innermost level must not hit BatchNorm.
    model = tiny(num_downs=6, base_channels=4).train()
    x = torch.rand(1, 1, 19, 23) * 2 - 1
    y = model(x)
    assert y.shape == (1, 2, 19, 23)
    y.abs().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads if g is not None)


def test_default_unet_256_parameter_count_and_full_size_forward() -> None:
    # junyanz UnetGenerator(3, 3, num_downs=8, ngf=64, BatchNorm) has 54,413,955 parameters
    # (printed as "54.414 M"): convs are bias-free because BatchNorm follows them, except
    # the last ConvTranspose2d(128 -> out), which has a bias. Counted by hand:
    #   down convs 19,532,800 + down BN 4,864 + up convs 34,871,296 + up BN 4,992 + bias 3.
    # (The 54,414,019 quoted in some write-ups is 64 too many: a bias on the first conv,
    # which pix2pix does not have.)
    assert n_params(UNetGenerator(in_channels=3, out_channels=3)) == 54_413_955
    # For L -> ab (1 -> 2): the first conv loses (3-1)*64*4*4 = 2,048 weights and the
    # last ConvTranspose2d loses 128*(3-2)*4*4 = 2,048 weights plus 1 bias:
    # 54,413,955 - 4,097 = 54,409,858.
    model = build_generator(seed=0).eval()
    assert n_params(model) == 54_409_858
    with torch.no_grad():
        y = model(torch.rand(1, 1, 256, 256) * 2 - 1)
    assert y.shape == (1, 2, 256, 256)
    assert y.abs().max() < 1.0


def test_unet_128_parameter_count() -> None:
    # num_downs=7 drops one 512->512 level: 4,194,304 (down conv) + 1,024 (its BN)
    # + 8,388,608 (its 1024->512 up conv) + 1,024 (its BN) = 12,584,960 fewer.
    model = build_generator(ModelSpec("unet_128"), seed=0)
    assert n_params(model) == 54_409_858 - 12_584_960


@pytest.mark.parametrize(("num_downs", "expected"), [(8, 3), (7, 2), (5, 0)])
def test_dropout_only_in_the_inner_8ngf_decoder_levels(num_downs: int, expected: int) -> None:
    model = UNetGenerator(num_downs=num_downs, base_channels=2)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == expected
    assert all(d.p == 0.5 for d in dropouts)
    no_dropout = UNetGenerator(num_downs=num_downs, dropout=0)
    assert not any(isinstance(m, nn.Dropout) for m in no_dropout.modules())


def test_dropout_is_active_in_train_mode_only() -> None:
    model = UNetGenerator(num_downs=6, base_channels=4)  # one dropout level (level 4)
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    # Two train-mode passes: same batch statistics, different dropout masks.
    assert not torch.equal(model.train()(x), model(x))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_one_input_pixel_changes_the_output_mostly_next_to_it() -> None:
    # The full-resolution skip connection carries local detail straight to the output,
    # so poking one pixel changes the prediction most right there.
    model = tiny()
    x = torch.rand(1, 1, 32, 48, generator=torch.Generator().manual_seed(3)) * 2 - 1
    poked = x.clone()
    row, col = 13, 21
    poked[0, 0, row, col] += 1.0
    with torch.no_grad():
        change = (model(poked) - model(x)).abs().amax(dim=1)[0]  # [H, W]
    assert change[row - 1 : row + 2, col - 1 : col + 2].max() > 0
    peak_row, peak_col = divmod(int(change.argmax()), change.shape[1])
    # Measured: peak 1 px away and 118x the mean change; with the skips zeroed the peak
    # drifts 3 px away and is only ~5x the mean, so these bounds catch a broken skip.
    assert abs(peak_row - row) <= 2 and abs(peak_col - col) <= 2
    assert change.max() > 30 * change.mean()


def test_output_at_the_pixel_depends_on_the_pixel_through_the_skip() -> None:
    model = tiny()
    x = (torch.rand(1, 1, 16, 16) * 2 - 1).requires_grad_(True)
    model(x)[0, :, 8, 8].sum().backward()
    assert x.grad is not None
    assert x.grad[0, 0, 8, 8] != 0


def test_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="num_downs"):
        UNetGenerator(num_downs=0)
    with pytest.raises(ValueError, match="dropout"):
        UNetGenerator(dropout=1.0)
    with pytest.raises(TypeError):
        UNetGenerator(1, 2)  # type: ignore[misc]  # keyword-only

"""Pictures of a training run: the loss curves and a grid of fixed validation photos."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from colorization import color
from colorization.constants import GRID_PHOTOS
from colorization.data import LoaderConfig, make_loader

# Loss names used in logs, history and plots (pix2pix's names).
LOSS_NAMES = ("D_real", "D_fake", "G_GAN", "G_L1")


def loss_plot_png(history: Sequence[dict[str, Any]], *, title: str = "") -> bytes:
    """PNG of the per-epoch mean losses: D_real, D_fake and G_GAN on the left, G_L1 (on its
    own scale) on the right."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to memory only
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.5), dpi=100)
    gan_axes, l1_axes = figure.subplots(1, 2)
    epochs = [entry["epoch"] for entry in history]
    for name in LOSS_NAMES:
        if any(name in entry for entry in history):
            axes = l1_axes if name == "G_L1" else gan_axes
            axes.plot(epochs, [entry.get(name, float("nan")) for entry in history],
                      marker="o", label=name)
    for axes, label in ((gan_axes, "adversarial losses"), (l1_axes, "G_L1 (normalised ab)")):
        axes.set_xlabel("epoch")
        axes.set_title(label)
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def grid_png(l_norm: torch.Tensor, pred_ab: torch.Tensor, true_ab: torch.Tensor) -> bytes:
    """PNG with one row per photo: grayscale | predicted | original.

    All inputs normalised: L [B, 1, S, S], ab [B, 2, S, S].
    """
    l_norm, pred_ab, true_ab = (t.detach().float().cpu() for t in (l_norm, pred_ab, true_ab))
    columns = [color.model_output_to_rgb(l_norm, torch.zeros_like(true_ab)),
               color.model_output_to_rgb(l_norm, pred_ab),
               color.model_output_to_rgb(l_norm, true_ab)]  # each [B, 3, S, S]
    rows = torch.cat(columns, dim=3)  # [B, 3, S, 3S]
    picture = torch.cat(list(rows), dim=1)  # [3, B*S, 3S]
    buffer = io.BytesIO()
    Image.fromarray((picture.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5)
                    .astype("uint8")).save(buffer, format="PNG")
    return buffer.getvalue()


def fixed_val_photos(dataset: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The first GRID_PHOTOS validation photos, unshuffled and unflipped: the same every
    epoch and every run of a dataset."""
    try:
        loader = make_loader(dataset, "val", LoaderConfig(
            batch_size=GRID_PHOTOS, shuffle=False, augment=False))
    except ValueError:  # a snapshot without a val split: no grid
        return None
    with torch.random.fork_rng(devices=[]):  # reading the grid must not move the RNG
        return next(iter(loader), None)


def progress_bar(show: bool, description: str, total: int, done: int) -> Any:
    """tqdm on rank 0's terminal: images done, rate and ETA within the epoch."""
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=description, unit="img", leave=False,
                disable=None, dynamic_ncols=True)

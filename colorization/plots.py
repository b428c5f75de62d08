"""Pictures of a training run: the loss curves and a grid of fixed validation photos."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from colorization import color

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

"""Run pictures: the loss plot renders, the grid's columns are gray | predicted | original."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from colorization import color, plots


def test_grid_columns_are_grayscale_prediction_and_original():
    gen = torch.Generator().manual_seed(0)
    l_norm = torch.rand(2, 1, 8, 8, generator=gen) * 2 - 1
    pred, truth = (torch.rand(2, 2, 8, 8, generator=gen) - 0.5 for _ in range(2))
    grid = np.asarray(Image.open(io.BytesIO(plots.grid_png(l_norm, pred, truth))))
    assert grid.shape == (16, 24, 3)
    for column, ab in enumerate((torch.zeros_like(truth), pred, truth)):
        expected = (color.model_output_to_rgb(l_norm, ab).permute(0, 2, 3, 1).numpy() * 255)
        tile = grid[:, 8 * column: 8 * (column + 1)].reshape(2, 8, 8, 3)
        assert np.abs(tile.astype(float) - expected).max() <= 0.51
    # The gray column is gray: R = G = B up to rounding.
    assert np.ptp(grid[:, :8].astype(int), axis=2).max() <= 1


def test_loss_plot_is_a_png_for_both_stages():
    pretrain = [{"epoch": 1, "G_L1": 0.2}, {"epoch": 2, "G_L1": 0.1}]
    gan = [{"epoch": 1, "D_real": 0.6, "D_fake": 0.5, "G_GAN": 0.9, "G_L1": 0.1}]
    for history in (pretrain, gan):
        image = Image.open(io.BytesIO(plots.loss_plot_png(history, title="t")))
        assert image.format == "PNG" and image.size == (900, 350)

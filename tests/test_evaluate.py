"""Evaluation: metrics written to the card, checked against scikit-image on the shards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.color import lab2rgb
from skimage.metrics import peak_signal_noise_ratio
from test_shards import _shard_samples

from colorization import versions
from colorization.evaluate import EvalConfig, evaluate_model


def test_metrics_match_an_independent_computation(tiny_model, tiny_dataset):
    """Every reported metric is recomputed here, so none can be computed on the wrong images
    (e.g. the predictions' colourfulness measured on the ground truth)."""
    models_root, model_id = tiny_model
    metrics = evaluate_model(model_id, dataset=tiny_dataset, models_root=models_root,
                             config=EvalConfig(batch_size=3))
    assert set(metrics) == {"psnr", "psnr_grayscale", "colorfulness",
                            "colorfulness_ground_truth", "images"}  # each checked below
    assert metrics["images"] == 8
    card = versions.read_card(model_id, models_root=models_root)
    assert card["metrics"] == metrics and card["evaluated_on"]["split"] == "val"

    # Recompute from the raw shards with scikit-image and our tiny generator by hand.
    generator, _ = versions.load_generator(model_id, models_root=models_root)
    gray_psnr, pred_psnr, truth_colorfulness, pred_colorfulness = [], [], [], []
    for lab in _shard_samples(tiny_dataset, "val").values():
        lab = lab.astype(np.float64)
        truth = lab2rgb(lab.transpose(1, 2, 0))
        gray = lab2rgb(np.stack([lab[0], 0 * lab[0], 0 * lab[0]], axis=-1))
        gray_psnr.append(peak_signal_noise_ratio(truth, gray, data_range=1))
        truth_colorfulness.append(_hasler_susstrunk(truth))
        l_norm = torch.from_numpy(lab[None, :1] / 50 - 1).float()
        with torch.no_grad():
            ab = generator(l_norm)[0].numpy().astype(np.float64).clip(-1, 1) * 110
        pred = lab2rgb(np.concatenate([lab[:1], ab]).transpose(1, 2, 0))
        pred_psnr.append(peak_signal_noise_ratio(truth, pred, data_range=1))
        pred_colorfulness.append(_hasler_susstrunk(pred))
    assert metrics["psnr_grayscale"] == pytest.approx(np.mean(gray_psnr), abs=0.05)
    assert metrics["psnr"] == pytest.approx(np.mean(pred_psnr), abs=0.05)
    assert metrics["colorfulness_ground_truth"] == pytest.approx(np.mean(truth_colorfulness),
                                                                 rel=2e-3)
    assert metrics["colorfulness"] == pytest.approx(np.mean(pred_colorfulness), rel=2e-3)
    # The check above can only tell predictions from ground truth if they differ.
    assert abs(np.mean(pred_colorfulness) - np.mean(truth_colorfulness)) > 1


def _hasler_susstrunk(rgb: np.ndarray) -> float:
    """Colourfulness M of an [H, W, 3] image in [0, 1], straight from the 2003 paper."""
    red, green, blue = (rgb * 255).transpose(2, 0, 1)
    rg, yb = red - green, 0.5 * (red + green) - blue
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def test_empty_or_unknown_split_is_named(tiny_model, tiny_dataset):
    models_root, model_id = tiny_model
    with pytest.raises(ValueError, match="'test'"):
        evaluate_model(model_id, dataset=tiny_dataset, models_root=models_root,
                       config=EvalConfig(split="test"))

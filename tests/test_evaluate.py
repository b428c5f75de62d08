"""Evaluation: per-photo metrics beside baselines, checked against scikit-image on the shards."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from PIL import Image
from skimage.color import deltaE_ciede2000, lab2rgb, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from support import TINY_GENERATOR
from test_shards import _shard_samples

from colorization import storage, versions
from colorization.evaluate import EvalConfig, evaluate_model, format_table, image_names
from colorization.train import TrainConfig, train_stage


@pytest.fixture(scope="module")
def gan_model(tiny_model, tiny_dataset, tmp_path_factory):
    """A gan stage fine-tuned from the tiny pretrain model, in a copy of its models root:
    (models root, gan id, pretrain id)."""
    models_root, pretrain_id = tiny_model
    root = tmp_path_factory.mktemp("gan-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLORIZATION_HOME", str(root))
        for url in storage.list_files(storage.join(models_root, pretrain_id)):
            name = storage.relative_key(url, models_root)
            storage.write_bytes(storage.join(str(root / "models"), name), storage.read_bytes(url))
        result = train_stage(TrainConfig(stage="gan", generator=TINY_GENERATOR, epochs=1,
                                         batch_size=8), dataset=tiny_dataset,
                             init_from=pretrain_id)
    return str(root / "models"), result["model_id"], pretrain_id


def _hasler_susstrunk(rgb: np.ndarray) -> float:
    """Colourfulness M of an [H, W, 3] image in [0, 1], straight from the 2003 paper."""
    red, green, blue = (rgb * 255).transpose(2, 0, 1)
    rg, yb = red - green, 0.5 * (red + green) - blue
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _reference(generator, lab: np.ndarray) -> dict[str, dict[str, float]]:
    """Metrics of one shard sample [3, S, S] computed with scikit-image alone."""
    lab = lab.astype(np.float64)
    truth = lab2rgb(lab.transpose(1, 2, 0))
    gray = lab2rgb(np.stack([lab[0], 0 * lab[0], 0 * lab[0]], axis=-1))
    l_norm = torch.from_numpy(lab[None, :1] / 50 - 1).float()
    with torch.no_grad():
        ab = generator(l_norm)[0].numpy().astype(np.float64).clip(-1, 1) * 110
    pred = lab2rgb(np.concatenate([lab[:1], ab]).transpose(1, 2, 0))
    out = {}
    for name, image in (("model", pred), ("grayscale", gray)):
        out[name] = {
            "psnr": peak_signal_noise_ratio(truth, image, data_range=1),
            "ssim": structural_similarity(truth, image, data_range=1, channel_axis=-1,
                                          gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False),
            "ciede2000": float(deltaE_ciede2000(rgb2lab(image), rgb2lab(truth)).mean()),
            "colorfulness": _hasler_susstrunk(image),
            "colorfulness_gap": abs(_hasler_susstrunk(image) - _hasler_susstrunk(truth)),
        }
    out["pred"] = pred
    return out


def test_metrics_match_an_independent_computation(gan_model, tiny_dataset):
    models_root, gan_id, pretrain_id = gan_model
    versions.promote(pretrain_id, models_root=models_root)
    seen = []
    record = evaluate_model(gan_id, dataset=tiny_dataset, models_root=models_root,
                            config=EvalConfig(batch_size=3),
                            progress=lambda done, total: seen.append((done, total)))
    assert record["images"] == 8 and seen == [(3, 8), (6, 8), (8, 8)]
    assert set(record["subjects"]) == {"model", "parent", "champion", "grayscale"}
    assert record["subjects"]["parent"]["model_id"] == pretrain_id
    assert record["subjects"]["champion"]["model_id"] == pretrain_id
    card = versions.read_card(gan_id, models_root=models_root)
    assert card["metrics"] == record["metrics"] and card["evaluated_on"]["split"] == "val"
    assert card["evaluation"]["summary"] == record["summary"]
    assert any("FID skipped" in note for note in record["notes"])
    assert any("LPIPS not computed" in note for note in record["notes"])

    generator, _ = versions.load_generator(gan_id, models_root=models_root)
    samples = _shard_samples(tiny_dataset, "val")
    assert sorted(record["per_photo"]) == sorted(samples)
    refs = {photo: _reference(generator, lab) for photo, lab in samples.items()}
    tolerance = {"psnr": 0.05, "ssim": 2e-3, "ciede2000": 0.05, "colorfulness": 0.1,
                 "colorfulness_gap": 0.1}
    for photo, ref in refs.items():
        for name, abs_tol in tolerance.items():
            assert record["per_photo"][photo][name] == pytest.approx(ref["model"][name],
                                                                     abs=abs_tol), name
    for role in ("model", "grayscale"):
        for name, abs_tol in tolerance.items():
            values = [ref[role][name] for ref in refs.values()]
            low, high = scipy.stats.t.interval(0.95, len(values) - 1, loc=np.mean(values),
                                               scale=scipy.stats.sem(values))
            got = record["summary"][role][name]
            assert got["mean"] == pytest.approx(np.mean(values), abs=abs_tol), (role, name)
            assert got["low"] == pytest.approx(low, abs=2 * abs_tol), (role, name)
            assert got["high"] == pytest.approx(high, abs=2 * abs_tol), (role, name)
    # The parent and the champion are the same model here: the same numbers.
    assert record["summary"]["parent"] == record["summary"]["champion"]
    assert record["metrics"]["psnr_grayscale"] == record["summary"]["grayscale"]["psnr"]["mean"]

    # The review images: one PNG per photo and slice, the colorized one is the prediction.
    names = image_names(list(samples))
    for photo, ref in list(refs.items())[:3]:
        url = storage.join(record["images_url"], "colorized", names[photo])
        with Image.open(storage.local_path(url)) as img:
            got = np.asarray(img, dtype=np.float64) / 255
        assert np.abs(got - ref["pred"]).max() <= 1 / 255 + 1e-6
    for slice_name in ("grayscale", "colorized", "original"):
        assert len(storage.list_files(storage.join(record["images_url"], slice_name))) == 8

    # Evaluated again as the champion: no column of itself, a note instead.
    versions.promote(gan_id, models_root=models_root)
    again = evaluate_model(gan_id, dataset=tiny_dataset, models_root=models_root,
                           config=EvalConfig(write_images=False))
    assert set(again["subjects"]) == {"model", "parent", "grayscale"}
    assert "the model is the champion" in again["notes"]
    assert again["summary"]["model"] == record["summary"]["model"]

    table = format_table(record)
    assert f"model: {gan_id} (gan)" in table and f"parent: {pretrain_id} (pretrain)" in table
    assert "grayscale (ab = 0)" in table and "| ciede2000 |" in table


def test_without_comparison_only_the_grayscale_baseline_and_fid(tiny_model, tiny_dataset,
                                                                tmp_path):
    from torchvision.models import inception_v3

    weights = tmp_path / "inception.pth"
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(),
               weights)
    models_root, model_id = tiny_model
    record = evaluate_model(model_id, dataset=tiny_dataset, models_root=models_root,
                            config=EvalConfig(compare=False, write_images=False,
                                              fid_weights=str(weights)))
    assert set(record["subjects"]) == {"model", "grayscale"}
    assert record["images_url"] is None
    assert "the model is the champion" not in record["notes"]
    # FID is one number per set (no interval), for the model and the baseline.
    for role in ("model", "grayscale"):
        assert isinstance(record["summary"][role]["fid"], float)
        assert record["summary"][role]["fid"] >= -1e-6
    assert record["metrics"]["fid"] == record["summary"]["model"]["fid"]
    assert "| fid |" in format_table(record)
    assert not any("FID" in note for note in record["notes"])


def test_empty_or_unknown_split_is_named(tiny_model, tiny_dataset):
    models_root, model_id = tiny_model
    with pytest.raises(ValueError, match="'test'"):
        evaluate_model(model_id, dataset=tiny_dataset, models_root=models_root,
                       config=EvalConfig(split="test"))


def test_image_names_keep_ids_apart():
    assert image_names(["a/x.jpg", "y.png"]) == {"a/x.jpg": "a/x.png", "y.png": "y.png"}
    assert image_names(["x.jpg", "x.png"]) == {"x.jpg": "x.jpg.png", "x.png": "x.png.png"}

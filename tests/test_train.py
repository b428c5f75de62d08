"""Training stages: the L1 loss falls, the GAN loss is adversarial + 100 x L1, runs resume."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from support import TINY_GENERATOR

from colorization import paths, storage, versions
from colorization.constants import CHECKPOINT_NAME, WEIGHTS_NAME
from colorization.train import (
    STAGES,
    TrainConfig,
    _Trainer,
    run_name_for,
    train_stage,
)


def test_pretrain_l1_falls_and_saves_a_version(tiny_dataset):
    config = TrainConfig(generator=TINY_GENERATOR, epochs=8, batch_size=4, seed=0)
    result = train_stage(config, dataset=tiny_dataset)
    history = result["history"]
    assert result["steps"] == 8 * 8 and [h["images"] for h in history] == [32] * 8
    assert set(history[0]) >= {"l1", "loss_g"} and "loss_d" not in history[0]
    # 64 steps on 32 photos: the mean L1 of the last epoch is well below the first.
    assert history[-1]["l1"] < 0.8 * history[0]["l1"], history
    card = versions.read_card(result["model_id"])
    assert card["stage"] == "pretrain" and card["generator"] == TINY_GENERATOR.to_dict()
    assert card["image_size"] == 32 and card["dataset"] == tiny_dataset
    assert len(card["dataset_manifest_sha256"]) == 64 and card["parent"] is None
    # The weights are a plain state dict that loads with weights_only=True.
    raw = storage.read_bytes(storage.join(result["model_url"], WEIGHTS_NAME))
    state = torch.load(io.BytesIO(raw), weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_gan_stage_loss_is_adversarial_plus_100_l1(tiny_model, tiny_dataset):
    models_root, parent = tiny_model
    config = TrainConfig(stage="gan", generator=TINY_GENERATOR, epochs=1, batch_size=8)
    result = train_stage(config, dataset=tiny_dataset, init_from=parent,
                         models_root=models_root)
    epoch = result["history"][0]
    assert {"loss_d", "adversarial", "l1", "loss_g"} <= set(epoch)
    # Means of per-step values: loss_g = adversarial + 100 * l1 holds for the means too.
    assert epoch["loss_g"] == pytest.approx(epoch["adversarial"] + 100 * epoch["l1"], rel=1e-5)
    assert 0 < epoch["loss_d"] < 5
    card = versions.read_card(result["model_id"], models_root=models_root)
    assert card["parent"] == parent and card["stage"] == "gan"


def test_gan_starts_from_the_parent_weights(tiny_model, tiny_dataset):
    models_root, parent = tiny_model
    config = TrainConfig(stage="gan", generator=TINY_GENERATOR, epochs=1)
    trainer = _Trainer(config, torch.device("cpu"), parent, models_root, 32)
    expected, _ = versions.load_generator(parent, models_root=models_root)
    for name, value in expected.state_dict().items():
        assert torch.equal(trainer.generator.state_dict()[name], value), name
    assert trainer.discriminator is not None and STAGES["gan"].adversarial


def test_interrupted_run_resumes_from_its_checkpoint(tiny_dataset, monkeypatch):
    config = TrainConfig(generator=TINY_GENERATOR, epochs=3, batch_size=8, seed=5)
    reference = train_stage(config, dataset=tiny_dataset, run_name="reference")

    original_step, calls = _Trainer.step, {"n": 0}

    def failing_step(self, l_norm, ab):
        calls["n"] += 1
        if calls["n"] == 6:  # the second batch of epoch 2 (4 batches per epoch)
            raise RuntimeError("simulated crash")
        return original_step(self, l_norm, ab)

    monkeypatch.setattr(_Trainer, "step", failing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_stage(config, dataset=tiny_dataset, run_name="crashy")
    checkpoint = Path(paths.runs_root()) / "crashy" / CHECKPOINT_NAME
    payload = torch.load(checkpoint, weights_only=True)
    assert payload["epoch"] == 1 and payload["steps"] == 4
    monkeypatch.setattr(_Trainer, "step", original_step)
    resumed = train_stage(config, dataset=tiny_dataset, run_name="crashy")
    assert resumed["steps"] == 12 and len(resumed["history"]) == 3
    # Epoch 1 was not redone, and the resumed run matches an uninterrupted one.
    assert resumed["history"][0] == json.loads(payload["history"])[0]
    for ours, theirs in zip(resumed["history"], reference["history"], strict=True):
        assert ours["l1"] == pytest.approx(theirs["l1"], rel=1e-4)
    assert not checkpoint.exists()


def test_finished_run_returns_its_result_without_training(tiny_dataset, monkeypatch):
    config = TrainConfig(generator=TINY_GENERATOR, epochs=1, batch_size=8)
    first = train_stage(config, dataset=tiny_dataset)
    monkeypatch.setattr(_Trainer, "step", lambda *a: pytest.fail("trained again"))
    assert train_stage(config, dataset=tiny_dataset) == first
    assert run_name_for(config, tiny_dataset, None) != run_name_for(config, tiny_dataset, "x")


def test_gan_on_too_small_crops_is_refused(tiny_model):
    models_root, parent = tiny_model
    config = TrainConfig(stage="gan", generator=TINY_GENERATOR)
    with pytest.raises(ValueError, match="image_size 16 is too small"):
        _Trainer(config, torch.device("cpu"), parent, models_root, 16)


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="unknown stage 'wgan'"):
        TrainConfig(stage="wgan")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    config = TrainConfig(generator=TINY_GENERATOR, stage="gan")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config

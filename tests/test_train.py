"""Training stages: the L1 loss falls, the GAN loss is adversarial + 100 x L1, runs resume."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from support import TINY_GENERATOR

from colorization import paths, storage, versions
from colorization.constants import CHECKPOINT_NAME, WEIGHTS_NAME
from colorization.data import LoaderConfig, make_loader
from colorization.models import ModelSpec
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


def _crash_at_step(monkeypatch: pytest.MonkeyPatch, crash_at: int) -> Callable[[], None]:
    """Make `_Trainer.step` raise on its `crash_at`-th call; returns what undoes it."""
    original_step, calls = _Trainer.step, {"n": 0}

    def failing_step(self, l_norm, ab):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise RuntimeError("simulated crash")
        return original_step(self, l_norm, ab)

    monkeypatch.setattr(_Trainer, "step", failing_step)
    return lambda: monkeypatch.setattr(_Trainer, "step", original_step)


def test_interrupted_run_resumes_from_its_checkpoint(tiny_dataset, monkeypatch):
    config = TrainConfig(generator=TINY_GENERATOR, epochs=3, batch_size=8, seed=5)
    reference = train_stage(config, dataset=tiny_dataset, run_name="reference")

    # The second batch of epoch 2 (4 batches per epoch).
    undo_crash = _crash_at_step(monkeypatch, 6)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_stage(config, dataset=tiny_dataset, run_name="crashy")
    checkpoint = Path(paths.runs_root()) / "crashy" / CHECKPOINT_NAME
    payload = torch.load(checkpoint, weights_only=True)
    assert payload["epoch"] == 1 and payload["steps"] == 4
    undo_crash()
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


# A discriminator small enough to train in a fraction of a second on 32 px crops.
TINY_DISCRIMINATOR = ModelSpec("patchgan_70", {"base_channels": 8})


def _first_batch(dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    loader = make_loader(dataset, "train", LoaderConfig(batch_size=8, shuffle=False,
                                                        augment=False))
    return next(iter(loader))


def test_discriminator_step_raises_real_logits_and_lowers_fake_ones(tiny_dataset):
    """Guards D's targets: real pairs -> 1, generated pairs -> 0 (not the other way round)."""
    config = TrainConfig(stage="gan", generator=TINY_GENERATOR,
                         discriminator=TINY_DISCRIMINATOR, lr=1e-3, seed=0)
    trainer = _Trainer(config, torch.device("cpu"), None, None, 32)
    l_norm, ab = _first_batch(tiny_dataset)
    with torch.no_grad():
        fake = trainer.generator(l_norm)
    assert trainer.discriminator is not None

    def mean_logits() -> tuple[float, float]:
        # Train mode, as in the update itself: BatchNorm normalises each batch on its own.
        with torch.no_grad():
            real = trainer.discriminator(torch.cat([l_norm, ab], dim=1)).mean().item()
            fake_ = trainer.discriminator(torch.cat([l_norm, fake], dim=1)).mean().item()
        return real, fake_

    real_before, fake_before = mean_logits()
    for _ in range(5):
        trainer.update_discriminator(l_norm, ab, fake)
    real_after, fake_after = mean_logits()
    assert real_after > real_before + 0.5, (real_before, real_after)
    assert fake_after < fake_before - 0.5, (fake_before, fake_after)


def test_discriminator_step_sends_no_gradient_into_the_generator(tiny_dataset):
    """Guards `fake.detach()` in D's step: D's loss must leave the generator's grads empty."""
    config = TrainConfig(stage="gan", generator=TINY_GENERATOR,
                         discriminator=TINY_DISCRIMINATOR, seed=0)
    trainer = _Trainer(config, torch.device("cpu"), None, None, 32)
    l_norm, ab = _first_batch(tiny_dataset)
    fake = trainer.generator(l_norm)  # with its graph, as `step` passes it
    trainer.update_discriminator(l_norm, ab, fake)
    grads = {name: p.grad for name, p in trainer.generator.named_parameters()}
    leaked = [name for name, grad in grads.items() if grad is not None and grad.abs().sum() > 0]
    assert leaked == [], f"D's loss reached generator parameters: {leaked[:5]}"
    # D itself did get its gradients, so the step really ran.
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for p in trainer.discriminator.parameters())


def test_each_epoch_shuffles_the_same_samples_differently(tiny_dataset, monkeypatch):
    """Guards `seed=config.seed + epoch`: one fixed seed would repeat the order every epoch."""
    original_step, seen = _Trainer.step, []

    def recording_step(self, l_norm, ab):
        # Mean L per image identifies a sample (the flips augmentation keeps it).
        seen.extend(round(v, 5) for v in l_norm.mean(dim=(1, 2, 3)).tolist())
        return original_step(self, l_norm, ab)

    monkeypatch.setattr(_Trainer, "step", recording_step)
    config = TrainConfig(generator=TINY_GENERATOR, epochs=3, batch_size=8, seed=0)
    train_stage(config, dataset=tiny_dataset)
    epochs = [seen[i:i + 32] for i in range(0, 96, 32)]
    assert len(seen) == 96 and len(set(epochs[0])) == 32
    assert sorted(epochs[0]) == sorted(epochs[1]) == sorted(epochs[2])
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2] and epochs[0] != epochs[2]


def test_interrupted_gan_run_resumes_to_the_same_weights(tiny_dataset, monkeypatch):
    """Guards the resume of D and its optimiser: a resumed `gan` run must end bit-identical
    to an uninterrupted one (CPU, fp32, one process: every op here is deterministic)."""
    config = TrainConfig(stage="gan", generator=TINY_GENERATOR,
                         discriminator=TINY_DISCRIMINATOR, epochs=2, batch_size=8, seed=3,
                         device="cpu", precision="fp32")
    reference = train_stage(config, dataset=tiny_dataset, run_name="gan-reference")

    # The second batch of epoch 2 (4 batches per epoch).
    undo_crash = _crash_at_step(monkeypatch, 6)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_stage(config, dataset=tiny_dataset, run_name="gan-crashy")
    undo_crash()
    resumed = train_stage(config, dataset=tiny_dataset, run_name="gan-crashy")
    assert resumed["steps"] == reference["steps"] == 8

    expected, _ = versions.load_generator(reference["model_id"])
    actual, _ = versions.load_generator(resumed["model_id"])
    differing = [name for name, value in expected.state_dict().items()
                 if not torch.equal(actual.state_dict()[name], value)]
    assert differing == [], f"resumed weights differ from an uninterrupted run: {differing[:5]}"
    # The per-epoch losses match exactly too; only the timings differ.
    assert resumed["history"] == [{**h, "seconds": r["seconds"]} for h, r
                                  in zip(reference["history"], resumed["history"], strict=True)]

"""Training stages: losses named as pix2pix names them, versions with pictures, exact resume."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image
from support import TINY_GENERATOR, weights_of

from colorization import paths, storage, versions
from colorization.constants import (
    CHECKPOINT_DIR,
    GRID_NAME,
    HISTORY_NAME,
    LOSS_PLOT_NAME,
)
from colorization.data import LoaderConfig, make_loader
from colorization.devices import PRECISIONS
from colorization.distributed import DistContext
from colorization.models import ModelSpec
from colorization.train import (
    STAGES,
    TrainConfig,
    resolve_generator,
    run_name_for,
    train_stage,
)
from colorization.trainer import GANLoss, Trainer


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name  # bit for bit: max abs difference 0


def test_pretrain_l1_falls_and_saves_a_version_with_its_pictures(tiny_dataset):
    config = TrainConfig(generator=TINY_GENERATOR, epochs=8, batch_size=4, seed=0)
    result = train_stage(config, dataset=tiny_dataset)
    history = result["history"]
    assert result["steps"] == 8 * 8 and [h["images"] for h in history] == [32] * 8
    assert {"G_L1"} <= set(history[0]) and not {"D_real", "D_fake", "G_GAN"} & set(history[0])
    # 64 steps on 32 photos: the mean L1 of the last epoch is well below the first.
    assert history[-1]["G_L1"] < 0.8 * history[0]["G_L1"], history
    card = versions.read_card(result["model_id"])
    assert card["stage"] == "pretrain" and card["generator"] == TINY_GENERATOR.to_dict()
    assert card["image_size"] == 32 and card["dataset"] == tiny_dataset
    assert len(card["dataset_manifest_sha256"]) == 64 and card["parent"] is None
    training = card["training"]
    assert training["world_size"] == 1 and training["device"] == "cpu"
    assert training["precision"] in PRECISIONS and training["images_per_second"] > 0
    # The weights are a plain state dict that loads with weights_only=True.
    assert all(isinstance(v, torch.Tensor) for v in weights_of(result).values())
    # Beside the version: the history, its plot, and the grid of 6 val photos x 3 columns.
    saved = storage.read_json(storage.join(result["model_url"], HISTORY_NAME))
    assert saved == history
    plot = Image.open(io.BytesIO(storage.read_bytes(
        storage.join(result["model_url"], LOSS_PLOT_NAME))))
    assert plot.format == "PNG" and plot.size[0] > 300
    grid = Image.open(io.BytesIO(storage.read_bytes(storage.join(result["model_url"],
                                                                 GRID_NAME))))
    assert grid.size == (3 * 32, 6 * 32)


@pytest.mark.parametrize("gan_mode", ["vanilla", "lsgan"])
def test_gan_stage_logs_the_four_losses(tiny_model, tiny_dataset, gan_mode):
    models_root, parent = tiny_model
    config = TrainConfig(stage="gan", generator=TINY_GENERATOR, epochs=1, batch_size=8,
                         gan_mode=gan_mode)
    result = train_stage(config, dataset=tiny_dataset, init_from=parent,
                         models_root=models_root)
    epoch = result["history"][0]
    assert {"D_real", "D_fake", "G_GAN", "G_L1"} <= set(epoch)
    assert all(0 < epoch[key] < 5 for key in ("D_real", "D_fake", "G_GAN"))
    card = versions.read_card(result["model_id"], models_root=models_root)
    assert card["parent"] == parent and card["stage"] == "gan"
    assert card["training"]["gan_mode"] == gan_mode


def test_gan_losses_match_their_formulas():
    logits = torch.tensor([[-2.0, 0.0], [1.0, 3.0]]).reshape(1, 1, 2, 2)
    sigmoid = torch.sigmoid(logits)
    # vanilla: binary cross-entropy on logits; lsgan: squared distance to the target.
    assert GANLoss("vanilla")(logits, True).item() == pytest.approx(
        float(-torch.log(sigmoid).mean()), rel=1e-6)
    assert GANLoss("vanilla")(logits, False).item() == pytest.approx(
        float(-torch.log(1 - sigmoid).mean()), rel=1e-6)
    assert GANLoss("lsgan")(logits, True).item() == pytest.approx(
        float(((logits - 1) ** 2).mean()), rel=1e-6)
    assert GANLoss("lsgan")(logits, False).item() == pytest.approx(float((logits**2).mean()))
    with pytest.raises(ValueError, match="unknown gan_mode 'wgan'"):
        GANLoss("wgan")


def make_trainer(config: TrainConfig, init_from=None, models_root=None, image_size=32):
    return Trainer(stage_adversarial=STAGES[config.stage].adversarial,
                   generator_spec=config.generator, discriminator_spec=config.discriminator,
                   init_from=init_from, models_root=models_root, lr=config.learning_rate,
                   betas=config.betas, l1_weight=config.l1_weight, gan_mode=config.gan_mode,
                   seed=config.seed, image_size=image_size, device=torch.device("cpu"),
                   precision=PRECISIONS["fp32"], ctx=DistContext())


def test_gan_starts_from_the_parent_weights_and_d_step_leaves_g_alone(tiny_model):
    models_root, parent = tiny_model
    trainer = make_trainer(TrainConfig(stage="gan", generator=TINY_GENERATOR), parent,
                           models_root)
    expected, _ = versions.load_generator(parent, models_root=models_root)
    for name, value in expected.state_dict().items():
        assert torch.equal(trainer.generator.state_dict()[name], value), name
    # backward_D: the generator's weights get no gradient from D's loss.
    l_norm, ab = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 2, 32, 32) * 2 - 1
    fake = trainer.generator(l_norm)
    trainer.update_discriminator(l_norm, ab, fake)
    assert all(p.grad is None for p in trainer.generator.parameters())
    assert any(p.grad is not None for p in trainer.discriminator.parameters())


@pytest.mark.parametrize("options", [{}, {"lr_decay_epochs": 2}, {"ema_decay": 0.9}],
                         ids=["constant", "decay", "ema"])
def test_killed_run_resumes_to_identical_weights(tiny_dataset, monkeypatch, options):
    """In-process crash after step 5; the subprocess SIGKILL test is in test_train_resume.
    With a decaying rate the crash lands in a decayed epoch: the resumed run must set it.
    With an EMA the saved weights are the average, which the checkpoint must carry."""
    config = TrainConfig(generator=TINY_GENERATOR, epochs=3, batch_size=8, seed=5,
                         checkpoint_every=2, precision="fp32", **options)
    reference = train_stage(config, dataset=tiny_dataset, run_name="reference")

    original_step, calls = Trainer.step, {"n": 0}

    def failing_step(self, l_norm, ab):
        calls["n"] += 1
        if calls["n"] == 6:  # the second batch of epoch 2 (4 batches per epoch)
            raise RuntimeError("simulated crash")
        return original_step(self, l_norm, ab)

    monkeypatch.setattr(Trainer, "step", failing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_stage(config, dataset=tiny_dataset, run_name="crashy")
    folder = Path(paths.runs_root()) / "crashy" / CHECKPOINT_DIR
    # Checkpoints at steps 2, 4 (= epoch 1's end) were written; the newest two are kept.
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000002.pt", "step-00000004.pt"]
    monkeypatch.setattr(Trainer, "step", original_step)
    resumed = train_stage(config, dataset=tiny_dataset, run_name="crashy")
    assert resumed["steps"] == 12
    for ours, theirs in zip(resumed["history"], reference["history"], strict=True):
        assert {k: v for k, v in ours.items() if k != "seconds"} == \
            {k: v for k, v in theirs.items() if k != "seconds"}
    assert_same_weights(weights_of(resumed), weights_of(reference))


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(tiny_dataset, monkeypatch,
                                                              caplog):
    # Six levels: the decoder has dropout, so the resumed RNG state matters (padded to 64).
    config = TrainConfig(generator=ModelSpec("unet", {"num_downs": 6, "base_channels": 4}),
                         epochs=2, batch_size=4, seed=3, checkpoint_every=3, precision="fp32")
    reference = train_stage(config, dataset=tiny_dataset, run_name="reference")
    original_step, calls = Trainer.step, {"n": 0}

    def failing_step(self, l_norm, ab):
        calls["n"] += 1
        if calls["n"] == 8:
            raise RuntimeError("simulated crash")
        return original_step(self, l_norm, ab)

    monkeypatch.setattr(Trainer, "step", failing_step)
    with pytest.raises(RuntimeError):
        train_stage(config, dataset=tiny_dataset, run_name="corrupt")
    monkeypatch.setattr(Trainer, "step", original_step)
    folder = Path(paths.runs_root()) / "corrupt" / CHECKPOINT_DIR
    # Kept: steps 3 and 6; with 6 torn, the run resumes mid-epoch 1 from step 3.
    newest = max(folder.iterdir())
    assert newest.name == "step-00000006.pt" and len(list(folder.iterdir())) == 2
    newest.write_bytes(newest.read_bytes()[:1000])  # a torn write on a full disk
    with caplog.at_level(logging.WARNING, logger="colorization.checkpoints"):
        resumed = train_stage(config, dataset=tiny_dataset, run_name="corrupt")
    assert f"checkpoint {newest} is unreadable" in caplog.text
    assert "falling back to the previous one" in caplog.text
    assert_same_weights(weights_of(resumed), weights_of(reference))


def test_more_epochs_continue_a_finished_run(tiny_dataset, monkeypatch):
    base = TrainConfig(generator=TINY_GENERATOR, batch_size=8, seed=1, precision="fp32")
    straight = train_stage(TrainConfig(**{**base.__dict__, "epochs": 3}), dataset=tiny_dataset,
                           run_name="straight")
    two = TrainConfig(**{**base.__dict__, "epochs": 2})
    first = train_stage(two, dataset=tiny_dataset)
    # The same command again returns the finished result without training.
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "step", lambda *a: pytest.fail("trained again"))
        assert train_stage(two, dataset=tiny_dataset) == first
    three = TrainConfig(**{**base.__dict__, "epochs": 3})
    assert run_name_for(three, tiny_dataset, None) == run_name_for(two, tiny_dataset, None)
    more = train_stage(three, dataset=tiny_dataset)
    assert more["steps"] == 12 and more["history"][:2] == first["history"]
    assert more["model_id"] != first["model_id"]
    assert_same_weights(weights_of(more), weights_of(straight))
    assert run_name_for(two, tiny_dataset, None) != run_name_for(two, tiny_dataset, "x")


def test_linear_decay_follows_pix2pix_scheduler():
    """pix2pix's networks.get_scheduler('linear'), stepped once per epoch, as reference."""
    epochs, decay, base = 7, 3, 2e-4
    config = TrainConfig(epochs=epochs, lr_decay_epochs=decay, lr=base)
    optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=base)
    n_epochs, epoch_count = epochs - decay, 1

    def lambda_rule(epoch: int) -> float:
        return 1.0 - max(0, epoch + epoch_count - n_epochs) / float(decay + 1)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lambda_rule)
    for epoch in range(epochs):
        assert config.lr_at(epoch) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-12)
        optimizer.step()
        scheduler.step()
    assert [TrainConfig(epochs=3, lr=base).lr_at(e) for e in range(3)] == [base] * 3
    with pytest.raises(ValueError, match="lr_decay_epochs must be between 0 and epochs"):
        TrainConfig(epochs=2, lr_decay_epochs=3)


def test_decay_reaches_the_optimisers(tiny_dataset):
    config = TrainConfig(generator=TINY_GENERATOR, epochs=3, batch_size=8, seed=1,
                         precision="fp32", stage="gan", lr=1e-3, lr_decay_epochs=2)
    result = train_stage(config, dataset=tiny_dataset)
    assert [e["lr"] for e in result["history"]] == pytest.approx([1e-3, 2e-3 / 3, 1e-3 / 3])
    newest = max((Path(result["run_dir"]) / CHECKPOINT_DIR).iterdir())
    state = torch.load(newest, weights_only=True)["trainer"]
    for opt in ("opt_g", "opt_d"):  # the last epoch ran at lr / 3
        assert state[opt]["param_groups"][0]["lr"] == pytest.approx(1e-3 / 3)
    # Like epochs, the schedule may grow with a run: a constant-rate first epoch, then the
    # same run continued to more epochs with a decay (benchmarks/quality_cpu.py does this).
    constant = TrainConfig(**{**config.__dict__, "lr_decay_epochs": 0, "epochs": 1})
    assert run_name_for(config, tiny_dataset, None) == run_name_for(constant, tiny_dataset, None)


def test_auto_generator_follows_the_image_size(caplog):
    config = TrainConfig()
    assert resolve_generator(config, 128).generator == ModelSpec("unet_128")
    assert resolve_generator(config, 256).generator == ModelSpec("unet_256")
    assert resolve_generator(config, 32).generator == ModelSpec("unet", {"num_downs": 5})
    named = TrainConfig(generator=TINY_GENERATOR)
    assert resolve_generator(named, 128) == named
    # A generator built for larger inputs pads, and says so.
    with caplog.at_level(logging.WARNING, logger="colorization.trainer"):
        make_trainer(TrainConfig(generator=ModelSpec("unet", {"num_downs": 6,
                                                              "base_channels": 4})))
    assert "pads 32-px crops to 64 px (4.0x the pixels)" in caplog.text


def test_recipe_learning_rates():
    assert TrainConfig().learning_rate == 2e-4
    assert TrainConfig(generator=ModelSpec("resnet18_unet")).learning_rate == 1e-4
    assert TrainConfig(generator=ModelSpec("resnet18_unet"), stage="gan").learning_rate == 2e-4
    assert TrainConfig(lr=3e-3).learning_rate == 3e-3


def test_gan_on_too_small_crops_is_refused(tiny_model):
    models_root, parent = tiny_model
    with pytest.raises(ValueError, match="image_size 16 is too small"):
        make_trainer(TrainConfig(stage="gan", generator=TINY_GENERATOR), parent, models_root,
                     image_size=16)


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="unknown stage 'wgan'"):
        TrainConfig(stage="wgan")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="unknown gan_mode 'hinge'"):
        TrainConfig(gan_mode="hinge")
    with pytest.raises(ValueError, match="checkpoint_every"):
        TrainConfig(checkpoint_every=-1)
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
    trainer = make_trainer(TrainConfig(stage="gan", generator=TINY_GENERATOR,
                                       discriminator=TINY_DISCRIMINATOR, lr=1e-3, seed=0))
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


def test_each_epoch_shuffles_the_same_samples_differently(tiny_dataset, monkeypatch):
    """Guards the per-epoch shuffle seed: one fixed seed would repeat the order every epoch."""
    original_step, seen = Trainer.step, []

    def recording_step(self, l_norm, ab):
        # Mean L per image identifies a sample (the flips augmentation keeps it).
        seen.extend(round(v, 5) for v in l_norm.float().mean(dim=(1, 2, 3)).tolist())
        return original_step(self, l_norm, ab)

    monkeypatch.setattr(Trainer, "step", recording_step)
    config = TrainConfig(generator=TINY_GENERATOR, epochs=3, batch_size=8, seed=0,
                         precision="fp32")
    train_stage(config, dataset=tiny_dataset)
    epochs = [seen[i:i + 32] for i in range(0, 96, 32)]
    assert len(seen) == 96 and len(set(epochs[0])) == 32
    assert sorted(epochs[0]) == sorted(epochs[1]) == sorted(epochs[2])
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2] and epochs[0] != epochs[2]

"""The training step's weight average (EMA): its arithmetic, and that versions keep it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from support import TINY_GENERATOR, weights_of

from colorization import checkpoints, versions
from colorization.devices import PRECISIONS
from colorization.distributed import DistContext
from colorization.models import ModelSpec
from colorization.train import TrainConfig, run_name_for, train_stage
from colorization.trainer import Trainer

DECAY = 0.75


def trainer(ema_decay: float, stage_adversarial: bool = True) -> Trainer:
    return Trainer(stage_adversarial=stage_adversarial, generator_spec=TINY_GENERATOR,
                   discriminator_spec=ModelSpec("patchgan_70"), init_from=None,
                   models_root=None, lr=1e-3, betas=(0.5, 0.999), l1_weight=100.0,
                   gan_mode="lsgan", seed=0, image_size=32, device=torch.device("cpu"),
                   precision=PRECISIONS["fp32"], ctx=DistContext(), ema_decay=ema_decay)


def snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(4, 1, 32, 32, generator=gen) * 2 - 1,
            torch.rand(4, 2, 32, 32, generator=gen) - 0.5)


def test_ema_is_the_running_average_of_the_weights_after_each_step():
    t = trainer(DECAY)
    after: list[dict[str, torch.Tensor]] = []
    for step in range(3):
        t.step(*batch(step))
        after.append(snapshot(t.generator))
    # Known answer: the first step copies G; each later one keeps DECAY of the average and
    # takes the rest from G: ema_k = DECAY * ema_{k-1} + (1 - DECAY) * w_k, for weights and
    # BatchNorm statistics alike.
    ema = snapshot(t.exported_generator)
    for name, value in ema.items():
        w1, w2, w3 = (a[name] for a in after)
        if not value.is_floating_point():  # num_batches_tracked: copied, not averaged
            continue
        expected = DECAY * (DECAY * w1 + (1 - DECAY) * w2) + (1 - DECAY) * w3
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-7, msg=name)
    # ... and is not G itself.
    assert any(not torch.equal(value, after[-1][name]) for name, value in ema.items())


def test_without_ema_the_exported_generator_is_g():
    t = trainer(0.0, stage_adversarial=False)
    t.step(*batch(0))
    assert t.ema is None and t.exported_generator is t.generator
    assert "ema" not in t.state()


def test_ema_state_round_trips_through_the_checkpoint_state():
    source = trainer(DECAY)
    for step in range(2):
        source.step(*batch(step))
    target = trainer(DECAY)
    # Through bytes, as a checkpoint goes (a live state dict would share Adam's moments).
    buffer = io.BytesIO()
    torch.save(source.state(), buffer)
    target.load_state(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    for name, value in snapshot(source.exported_generator).items():
        assert torch.equal(snapshot(target.exported_generator)[name], value), name
    # The average goes on from the restored one (n_averaged restored too: not a fresh copy).
    for t in (source, target):
        torch.manual_seed(7)  # the same dropout draws in both
        t.step(*batch(2))
    for name, value in snapshot(source.exported_generator).items():
        assert torch.equal(snapshot(target.exported_generator)[name], value), name


def test_a_version_trained_with_ema_holds_the_average_not_g(tiny_dataset):
    config = TrainConfig(generator=TINY_GENERATOR, epochs=2, batch_size=8, seed=0,
                         precision="fp32", ema_decay=0.9)
    plain = TrainConfig(**{**config.__dict__, "ema_decay": 0.0})
    assert run_name_for(config, tiny_dataset, None) != run_name_for(plain, tiny_dataset, None)
    with_ema, without = (train_stage(c, dataset=tiny_dataset) for c in (config, plain))
    last_ema, last_plain = (checkpoints.load_latest(Path(r["run_dir"]))["trainer"]
                            for r in (with_ema, without))
    saved, saved_plain = weights_of(with_ema), weights_of(without)
    for name, value in saved.items():
        # Same seed, same batches: G itself took the same path in both runs ...
        assert torch.equal(last_ema["generator"][name], last_plain["generator"][name]), name
        # ... and each version holds what its run exports: the average, or G.
        assert torch.equal(value, last_ema["ema"][f"module.{name}"]), name
        assert torch.equal(saved_plain[name], last_plain["generator"][name]), name
    assert any(not torch.equal(saved[k], last_plain["generator"][k]) for k in saved)
    card = versions.read_card(with_ema["model_id"])
    assert card["training"]["ema_decay"] == 0.9 and card["train_config"]["ema_decay"] == 0.9


def test_ema_decay_out_of_range_is_named():
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        TrainConfig(ema_decay=1.0)

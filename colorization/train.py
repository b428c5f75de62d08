"""The two training stages: `pretrain` (L1 only) and `gan` (adversarial + 100 x L1).

A run keeps a resumable checkpoint in its run folder, written atomically after every
epoch; calling `train_stage` again with the same run name resumes it, and once finished
returns the saved result without training again (so a retried Prefect task is safe).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from colorization import paths, storage, versions
from colorization.constants import (
    ADAM_BETAS,
    CHECKPOINT_NAME,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_EPOCHS,
    DEFAULT_PRECISION,
    DEFAULT_SEED,
    DEFAULT_STAGE,
    L1_WEIGHT,
    LEARNING_RATE,
    LOG_EVERY_STEPS,
    RESULT_NAME,
)
from colorization.data import LoaderConfig, make_loader
from colorization.devices import (
    PRECISION_CHOICES,
    autocast,
    check_device_name,
    select_device,
    select_precision,
)
from colorization.models import (
    DEFAULT_DISCRIMINATOR,
    DEFAULT_GENERATOR,
    ModelSpec,
    build_discriminator,
    build_generator,
)
from colorization.shards import manifest_digest, read_manifest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageSpec:
    """What distinguishes a stage: whether a discriminator takes part."""

    adversarial: bool
    description: str


STAGES: dict[str, StageSpec] = {
    "pretrain": StageSpec(adversarial=False, description="generator alone, L1 loss"),
    "gan": StageSpec(adversarial=True, description="pix2pix: adversarial + L1 x weight"),
}


@dataclass(frozen=True)
class TrainConfig:
    """Options of one training stage."""

    stage: str = DEFAULT_STAGE
    generator: ModelSpec = field(default_factory=lambda: ModelSpec(DEFAULT_GENERATOR))
    discriminator: ModelSpec = field(default_factory=lambda: ModelSpec(DEFAULT_DISCRIMINATOR))
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float = LEARNING_RATE
    betas: tuple[float, float] = ADAM_BETAS
    l1_weight: float = L1_WEIGHT
    seed: int = DEFAULT_SEED
    device: str = DEFAULT_DEVICE  # see colorization.devices
    precision: str = DEFAULT_PRECISION  # see colorization.devices
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}; known: {sorted(STAGES)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        check_device_name(self.device)
        if self.precision not in PRECISION_CHOICES:
            raise ValueError(f"unknown precision {self.precision!r}; "
                             f"known: {', '.join(PRECISION_CHOICES)}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["generator"], data["discriminator"] = (self.generator.to_dict(),
                                                    self.discriminator.to_dict())
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        for key in ("generator", "discriminator"):
            if isinstance(data.get(key), dict):
                data[key] = ModelSpec.from_dict(data[key])
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**data)


def run_name_for(config: TrainConfig, dataset: str, init_from: str | None) -> str:
    """Deterministic run name, so calling again with the same inputs resumes."""
    key = json.dumps([config.to_dict(), dataset.rstrip("/"), init_from], sort_keys=True)
    return f"{config.stage}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


class _Trainer:
    """Models, optimisers and the per-batch update of one stage."""

    def __init__(self, config: TrainConfig, device: torch.device, init_from: str | None,
                 models_root: str | None, image_size: int):
        self.config, self.device = config, device
        self.spec = STAGES[config.stage]
        self.precision = select_precision(config.precision, device=device)
        if init_from is not None:
            self.generator, card = versions.load_generator(init_from, models_root=models_root)
            self.generator_spec = ModelSpec.from_dict(card["generator"])
        else:
            self.generator = build_generator(config.generator, seed=config.seed)
            self.generator_spec = config.generator
        self.generator.to(device).train()
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr,
                                      betas=config.betas)
        self.discriminator: nn.Module | None = None
        self.opt_d: torch.optim.Optimizer | None = None
        if self.spec.adversarial:
            self.discriminator = build_discriminator(config.discriminator, seed=config.seed + 1)
            self._check_fits(image_size)
            self.discriminator.to(device).train()
            self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr,
                                          betas=config.betas)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision.needs_grad_scaler)
        self.bce = nn.BCEWithLogitsLoss()
        self.l1 = nn.L1Loss()

    def _check_fits(self, image_size: int) -> None:
        # A 70x70 PatchGAN needs crops of at least ~32 px; say so instead of a conv error.
        assert self.discriminator is not None
        try:
            with torch.no_grad():
                self.discriminator.eval()(torch.zeros(1, 3, image_size, image_size))
        except RuntimeError as exc:
            raise ValueError(f"image_size {image_size} is too small for discriminator "
                             f"{self.config.discriminator.name!r}: {exc}") from exc

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

    def step(self, l_norm: torch.Tensor, ab: torch.Tensor) -> dict[str, float]:
        """One update on L [B, 1, S, S] and target ab [B, 2, S, S]; returns the losses."""
        with self._autocast():
            fake = self.generator(l_norm)  # [B, 2, S, S]
        losses: dict[str, float] = {}
        if self.discriminator is not None:
            losses.update(self.update_discriminator(l_norm, ab, fake))
        losses.update(self.update_generator(l_norm, ab, fake))
        self.scaler.update()
        return losses

    def update_discriminator(self, l_norm: torch.Tensor, ab: torch.Tensor,
                             fake: torch.Tensor) -> dict[str, float]:
        """D's step: real (L, ab) pairs -> 1, generated pairs -> 0, on PatchGAN logits.

        `fake` is detached, so D's loss sends no gradient into the generator.
        """
        assert self.discriminator is not None and self.opt_d is not None
        with self._autocast():
            real_logits = self.discriminator(torch.cat([l_norm, ab], dim=1))
            fake_logits = self.discriminator(torch.cat([l_norm, fake.detach()], dim=1))
            loss_d = 0.5 * (self.bce(real_logits, torch.ones_like(real_logits))
                            + self.bce(fake_logits, torch.zeros_like(fake_logits)))
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(loss_d).backward()
        self.scaler.step(self.opt_d)
        return {"loss_d": loss_d.item()}

    def update_generator(self, l_norm: torch.Tensor, ab: torch.Tensor,
                         fake: torch.Tensor) -> dict[str, float]:
        """G's step: L1 to the target, plus (GAN stage) fooling D, which stays frozen."""
        losses: dict[str, float] = {}
        with self._autocast():
            l1 = self.l1(fake.float(), ab)
            loss_g = l1
            if self.discriminator is not None:
                # Gradients flow through D into G, but D's own weights get none.
                self.discriminator.requires_grad_(False)
                logits = self.discriminator(torch.cat([l_norm, fake], dim=1))
                adversarial = self.bce(logits, torch.ones_like(logits))
                loss_g = adversarial + self.config.l1_weight * l1
                losses["adversarial"] = adversarial.item()
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        if self.discriminator is not None:
            self.discriminator.requires_grad_(True)
        self.scaler.step(self.opt_g)
        losses.update(l1=l1.item(), loss_g=loss_g.item())
        return losses

    def state(self) -> dict[str, Any]:
        state = {"generator": self.generator.state_dict(), "opt_g": self.opt_g.state_dict(),
                 "scaler": self.scaler.state_dict()}
        if self.discriminator is not None and self.opt_d is not None:
            state.update(discriminator=self.discriminator.state_dict(),
                         opt_d=self.opt_d.state_dict())
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.scaler.load_state_dict(state["scaler"])
        if self.discriminator is not None and self.opt_d is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["opt_d"])


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    storage.write_bytes(str(path), buffer.getvalue())  # temp file + rename


def train_stage(
    config: TrainConfig,
    *,
    dataset: str,
    init_from: str | None = None,
    run_name: str | None = None,
    models_root: str | None = None,
) -> dict[str, Any]:
    """Train one stage on a prepared dataset and save the result as a model version.

    Args:
        config: the stage's options.
        dataset: URL of a prepared snapshot (see `shards.prepare_dataset`).
        init_from: model id or URL whose generator weights start this stage.
        run_name: names the resumable run; defaults to a digest of the inputs.
        models_root: where the version is saved; defaults to <home>/models.

    Returns:
        A small dict: model_id, model_url, stage, epochs, steps, seconds, history.
    """
    run_dir = Path(paths.runs_root()) / (run_name or run_name_for(config, dataset, init_from))
    result_path = run_dir / RESULT_NAME
    if result_path.exists():
        logger.info("run %s already finished; returning its result", run_dir)
        return json.loads(result_path.read_text())
    manifest = read_manifest(dataset)
    device = select_device(config.device)
    torch.manual_seed(config.seed)
    trainer = _Trainer(config, device, init_from, models_root,
                       manifest["options"]["image_size"])
    start_epoch, steps, history, elapsed = 0, 0, [], 0.0
    checkpoint = run_dir / CHECKPOINT_NAME
    if checkpoint.exists():
        # On the CPU: the RNG state must stay a CPU tensor; load_state_dict moves the rest.
        payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
        trainer.load_state(payload["trainer"])
        torch.set_rng_state(payload["rng"])
        start_epoch, steps = payload["epoch"], payload["steps"]
        history, elapsed = json.loads(payload["history"]), payload["seconds"]
        logger.info("resuming %s at epoch %d", run_dir, start_epoch)
    logger.info("stage %s: %d train images, device %s, precision %s", config.stage,
                manifest["splits"]["train"]["count"], device, trainer.precision.name)
    for epoch in range(start_epoch, config.epochs):
        loader = make_loader(dataset, "train", LoaderConfig(
            batch_size=config.batch_size, seed=config.seed + epoch,
            num_workers=config.num_workers))
        sums: dict[str, float] = {}
        started, batches, images = time.monotonic(), 0, 0
        for l_norm, ab in loader:
            losses = trainer.step(l_norm.to(device, non_blocking=True),
                                  ab.to(device, non_blocking=True))
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value
            batches, images, steps = batches + 1, images + l_norm.shape[0], steps + 1
            if batches % LOG_EVERY_STEPS == 0:
                logger.info("%s epoch %d: %d batches, l1 %.4f", config.stage, epoch + 1,
                            batches, sums["l1"] / batches)
        if batches == 0:
            raise ValueError(f"{dataset}: the train split yielded no batches")
        seconds = time.monotonic() - started
        elapsed += seconds
        history.append({"epoch": epoch + 1, "images": images, "seconds": round(seconds, 3),
                        **{key: value / batches for key, value in sums.items()}})
        logger.info("%s epoch %d/%d: %s (%.1f images/s)", config.stage, epoch + 1,
                    config.epochs, ", ".join(f"{k} {v / batches:.4f}" for k, v in sums.items()),
                    images / max(seconds, 1e-9))
        _save_checkpoint(checkpoint, {"trainer": trainer.state(), "rng": torch.get_rng_state(),
                                      "epoch": epoch + 1, "steps": steps, "seconds": elapsed,
                                      "history": json.dumps(history)})
    model_id = versions.new_model_id(config.stage)
    effective = replace(config, generator=trainer.generator_spec)
    card = {"stage": config.stage, "generator": trainer.generator_spec.to_dict(),
            "image_size": manifest["options"]["image_size"], "train_config": effective.to_dict(),
            "dataset": dataset, "dataset_manifest_sha256": manifest_digest(dataset),
            "parent": init_from, "training": {"epochs": config.epochs, "steps": steps,
                                              "seconds": round(elapsed, 3),
                                              "device": str(device),
                                              "precision": trainer.precision.name,
                                              "history": history}}
    url = versions.save_version(trainer.generator, card, model_id=model_id,
                                models_root=models_root)
    result = {"model_id": model_id, "model_url": url, "stage": config.stage,
              "epochs": config.epochs, "steps": steps, "seconds": round(elapsed, 3),
              "history": history}
    storage.write_json(str(result_path), result)
    os.remove(checkpoint)  # the version is saved; the run's checkpoint is no longer needed
    return result

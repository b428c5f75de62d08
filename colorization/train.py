"""The two training stages: `pretrain` (L1 only) and `gan` (adversarial + 100 x L1).

A run lives in `<runs>/<run name>/`: checkpoints every `checkpoint_every` steps and at each
epoch end (see `colorization.checkpoints`), the loss history, its plot and a grid of fixed
validation photos, rewritten each epoch. Calling `train_stage` again with the same run
name resumes exactly where the last checkpoint left it; once finished it returns the saved
result, unless asked for more epochs, which continue the run (optimiser state included).
Under torchrun (`colorization.distributed`) every rank trains on its own shards and only
rank 0 writes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from colorization import checkpoints, distributed, paths, plots, storage, versions
from colorization.constants import (
    ADAM_BETAS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_DEVICE,
    DEFAULT_EPOCHS,
    DEFAULT_GAN_MODE,
    DEFAULT_PRECISION,
    DEFAULT_SEED,
    DEFAULT_STAGE,
    GRID_NAME,
    HISTORY_NAME,
    L1_WEIGHT,
    LEARNING_RATE,
    LOSS_PLOT_NAME,
    PRETRAINED_ENCODER_LR,
    PROGRESS_LOG_FRACTION,
    RESULT_NAME,
)
from colorization.data import LoaderConfig, make_loader
from colorization.devices import (
    PRECISION_CHOICES,
    check_device_name,
    describe_hardware,
    select_device,
    select_training_precision,
)
from colorization.distributed import DistContext
from colorization.models import (
    AUTO_GENERATOR,
    DEFAULT_DISCRIMINATOR,
    ModelSpec,
    generator_for_size,
)
from colorization.shards import manifest_digest, read_manifest
from colorization.trainer import GAN_CRITERIA, Trainer

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
    """Options of one training stage. `generator` "auto" is the U-Net built for the
    dataset's image size; `lr` None is the recipe's (1e-4 for a pretrained encoder's L1
    pretraining, else pix2pix's 2e-4)."""

    stage: str = DEFAULT_STAGE
    generator: ModelSpec = field(default_factory=lambda: ModelSpec(AUTO_GENERATOR))
    discriminator: ModelSpec = field(default_factory=lambda: ModelSpec(DEFAULT_DISCRIMINATOR))
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float | None = None
    # pix2pix's "linear" policy: the rate stays at `lr`, then falls linearly over the last
    # `lr_decay_epochs` epochs (towards 0; the last epoch runs at lr / (N + 1)). 0: constant.
    lr_decay_epochs: int = 0
    # Saved generator = an exponential moving average of G's weights with this decay per
    # step (0: off, G itself). 0.99 averages over the last ~100 steps.
    ema_decay: float = 0.0
    betas: tuple[float, float] = ADAM_BETAS
    l1_weight: float = L1_WEIGHT
    gan_mode: str = DEFAULT_GAN_MODE
    seed: int = DEFAULT_SEED
    device: str = DEFAULT_DEVICE  # see colorization.devices
    precision: str = DEFAULT_PRECISION  # see colorization.devices.select_training_precision
    num_workers: int = 0
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY  # steps; 0: at epoch ends only
    compile: bool = False  # torch.compile the generator

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}; known: {sorted(STAGES)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if not 0 <= self.lr_decay_epochs <= self.epochs:
            raise ValueError(f"lr_decay_epochs must be between 0 and epochs ({self.epochs}), "
                             f"got {self.lr_decay_epochs}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0: off), got {self.ema_decay}")
        if self.checkpoint_every < 0:
            raise ValueError("checkpoint_every must be 0 (epoch ends only) or more")
        if self.gan_mode not in GAN_CRITERIA:
            raise ValueError(f"unknown gan_mode {self.gan_mode!r}; "
                             f"known: {', '.join(GAN_CRITERIA)}")
        check_device_name(self.device)
        if self.precision not in PRECISION_CHOICES:
            raise ValueError(f"unknown precision {self.precision!r}; "
                             f"known: {', '.join(PRECISION_CHOICES)}")

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        pretrained = self.generator.options.get("weights", "imagenet") != "none"
        if self.stage == "pretrain" and self.generator.name == "resnet18_unet" and pretrained:
            return PRETRAINED_ENCODER_LR
        return LEARNING_RATE

    def lr_at(self, epoch: int) -> float:
        """The rate of 0-based `epoch`, as pix2pix's LambdaLR computes it (n_epochs =
        epochs - lr_decay_epochs, n_epochs_decay = lr_decay_epochs)."""
        decay = self.lr_decay_epochs
        factor = 1.0 - max(0, epoch + 1 - (self.epochs - decay)) / (decay + 1)
        return self.learning_rate * factor

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


# Options that do not change what is computed, or that a run may grow (epochs, and with them
# the schedule of the rate's decay): a run asked for more epochs, or checkpointed more often,
# is the same run.
_NOT_IN_RUN_NAME = ("epochs", "lr_decay_epochs", "checkpoint_every", "num_workers")


def run_name_for(config: TrainConfig, dataset: str, init_from: str | None,
                 world_size: int = 1) -> str:
    """Deterministic run name, so calling again with the same inputs resumes."""
    options = {k: v for k, v in config.to_dict().items() if k not in _NOT_IN_RUN_NAME}
    if not options["ema_decay"]:
        del options["ema_decay"]  # off: runs named before the option existed keep their name
    key = json.dumps([options, dataset.rstrip("/"), init_from, world_size], sort_keys=True)
    return f"{config.stage}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def resolve_generator(config: TrainConfig, image_size: int) -> TrainConfig:
    """`config` with generator "auto" replaced by the U-Net built for `image_size`."""
    if config.generator.name != AUTO_GENERATOR:
        return config
    spec = generator_for_size(image_size)
    logger.info("generator auto -> %s for %d-px crops", spec.name, image_size)
    return replace(config, generator=ModelSpec(spec.name, {**spec.options,
                                                           **config.generator.options}))


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
        A small dict: model_id, model_url, stage, epochs, steps, seconds, history, run_dir.
    """
    ctx = distributed.setup(config.device)
    run_dir = Path(paths.runs_root()) / (
        run_name or run_name_for(config, dataset, init_from, ctx.world_size))
    result_path = run_dir / RESULT_NAME
    if result_path.exists():
        finished = json.loads(result_path.read_text())
        if finished["epochs"] >= config.epochs:
            logger.info("run %s already finished %d epochs; returning its result", run_dir,
                        finished["epochs"])
            return finished
        logger.info("run %s finished %d epochs; continuing to %d", run_dir,
                    finished["epochs"], config.epochs)
    manifest = read_manifest(dataset)
    image_size = manifest["options"]["image_size"]
    config = resolve_generator(config, image_size)
    device = select_device(config.device)
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
    precision = select_training_precision(config.precision, device=device)
    torch.manual_seed(config.seed)
    trainer = Trainer(
        stage_adversarial=STAGES[config.stage].adversarial, generator_spec=config.generator,
        discriminator_spec=config.discriminator, init_from=init_from, models_root=models_root,
        lr=config.learning_rate, betas=config.betas, l1_weight=config.l1_weight,
        gan_mode=config.gan_mode, seed=config.seed, image_size=image_size, device=device,
        precision=precision, ctx=ctx, compile_model=config.compile,
        ema_decay=config.ema_decay)
    loop = _Loop(config, trainer, ctx, run_dir, dataset)
    logger.info("stage %s: %d train images, device %s, precision %s, world size %d",
                config.stage, manifest["splits"]["train"]["count"], device, precision.name,
                ctx.world_size)
    loop.run()
    return _finish(config, loop, manifest, image_size, dataset, init_from, models_root,
                   result_path)


class _Loop:
    """The epoch loop of a run: position, loss sums, checkpoints and the per-epoch pictures."""

    def __init__(self, config: TrainConfig, trainer: Trainer, ctx: DistContext,
                 run_dir: Path, dataset: str) -> None:
        self.config, self.trainer, self.ctx = config, trainer, ctx
        self.run_dir, self.dataset = run_dir, dataset
        self.epoch, self.batch, self.steps, self.seconds = 0, 0, 0, 0.0
        self.images = 0  # of the current epoch, all ranks
        self.history: list[dict[str, Any]] = []
        self.sums: dict[str, torch.Tensor] = {}
        self.resume: dict[str, Any] | None = checkpoints.load_latest(run_dir)
        if self.resume is not None:
            if len(self.resume["rng"]) != ctx.world_size:
                raise ValueError(f"{run_dir}: checkpoint written by {len(self.resume['rng'])} "
                                 f"processes; resume it with --nproc {len(self.resume['rng'])}")
            trainer.load_state(self.resume["trainer"])
            self.epoch, self.batch = self.resume["epoch"], self.resume["batch"]
            self.steps, self.seconds = self.resume["steps"], self.resume["seconds"]
            self.images = self.resume["images"]
            self.history = json.loads(self.resume["history"])
            self.sums = {k: v.to(trainer.device) for k, v in self.resume["sums"].items()}
        self.grid_batch = plots.fixed_val_photos(dataset) if ctx.is_main else None

    def run(self) -> None:
        config = self.config
        per_epoch = _batches_per_epoch(self.dataset, config.batch_size, self.ctx.world_size)
        while self.epoch < config.epochs:
            loader = make_loader(self.dataset, "train", LoaderConfig(
                batch_size=config.batch_size, seed=config.seed + self.epoch,
                num_workers=config.num_workers))
            # The loader's shuffle is a function of its seed; its augmentation draws (and
            # worker seeds) come from torch's RNG as it stood when the epoch began. Resuming
            # replays them from there up to the checkpoint's batch, then restores the RNG
            # as it stood at the checkpoint.
            rank = self.ctx.rank
            if self.resume is not None:
                checkpoints.set_rng_state(self.resume["epoch_rng"][rank])
            self.epoch_rng = checkpoints.rng_state()
            batches = iter(loader)
            for _ in range(self.batch):
                next(batches)
            if self.resume is not None and self.batch > 0:
                # Mid-epoch: the checkpoint's RNG was taken after these draws. (At an epoch
                # end it was taken before the loader started: epoch_rng is that state.)
                checkpoints.set_rng_state(self.resume["rng"][rank])
            self.resume = None
            # A function of the epoch alone, so a resumed run sets exactly the same rate.
            self.trainer.set_lr(config.lr_at(self.epoch))
            self._epoch(batches, per_epoch)

    def _epoch(self, batches: Any, per_epoch: int) -> None:
        config, trainer, device = self.config, self.trainer, self.trainer.device
        bar = plots.progress_bar(self.ctx.is_main, f"{config.stage} {self.epoch + 1}/"
                                 f"{config.epochs}", per_epoch * config.batch_size
                                 * self.ctx.world_size, self.images)
        log_every = max(1, per_epoch // PROGRESS_LOG_FRACTION)
        started = time.monotonic()
        while True:
            pair = next(batches, None)
            if not distributed.all_ranks(pair is not None, self.ctx, device):
                break  # a rank ran out: every rank ends the epoch on the same step
            assert pair is not None
            l_norm, ab = pair
            losses = trainer.step(l_norm.to(device, non_blocking=True),
                                  ab.to(device, non_blocking=True))
            for key, value in losses.items():
                self.sums[key] = self.sums.get(key, torch.zeros((), device=device)) + value
            self.batch, self.steps = self.batch + 1, self.steps + 1
            self.images += l_norm.shape[0] * self.ctx.world_size
            if bar is not None:
                bar.update(l_norm.shape[0] * self.ctx.world_size)
            if self.batch % log_every == 0:
                means = self._means()
                if bar is not None:
                    bar.set_postfix(means, refresh=False)
                logger.debug("%s epoch %d batch %d/%d: %s", config.stage, self.epoch + 1,
                             self.batch, per_epoch, means)
            if config.checkpoint_every and self.steps % config.checkpoint_every == 0:
                self.seconds += time.monotonic() - started
                started = time.monotonic()
                self._checkpoint(epoch_rng=self.epoch_rng)
        if bar is not None:
            bar.close()
        if self.batch == 0:
            raise ValueError(f"{self.dataset}: the train split yielded no batches")
        self.seconds += time.monotonic() - started
        means = self._means()
        epoch_seconds = sum(h["seconds"] for h in self.history)
        entry = {"epoch": self.epoch + 1, "images": self.images,
                 "seconds": round(self.seconds - epoch_seconds, 3),
                 "lr": config.lr_at(self.epoch), **means}
        self.history.append(entry)
        logger.info("%s epoch %d/%d: %s (%.1f images/s)", config.stage, self.epoch + 1,
                    config.epochs, ", ".join(f"{k} {v:.4f}" for k, v in means.items()),
                    self.images / max(entry["seconds"], 1e-9))
        self._pictures()
        self.epoch, self.batch, self.images, self.sums = self.epoch + 1, 0, 0, {}
        # Last thing of the epoch: the next epoch begins from exactly this RNG state.
        self._checkpoint(epoch_rng=None)

    def _means(self) -> dict[str, float]:
        # The one place losses leave the device: .item() only when they are reported.
        return {key: round(float(value.item()) / self.batch, 6)
                for key, value in sorted(self.sums.items())}

    def _checkpoint(self, *, epoch_rng: dict[str, Any] | None) -> None:
        for net in (self.trainer.generator, self.trainer.discriminator):
            if net is not None:
                distributed.sync_buffers(net, self.ctx)
        rng = distributed.gather(checkpoints.rng_state(), self.ctx)
        epoch_rngs = rng if epoch_rng is None else distributed.gather(epoch_rng, self.ctx)
        if self.ctx.is_main:
            checkpoints.save(self.run_dir, {
                "trainer": self.trainer.state(), "epoch": self.epoch, "batch": self.batch,
                "steps": self.steps, "images": self.images, "seconds": self.seconds,
                "history": json.dumps(self.history),
                "sums": {k: v.detach().cpu() for k, v in self.sums.items()},
                "rng": rng, "epoch_rng": epoch_rngs, "world_size": self.ctx.world_size})
        distributed.barrier(self.ctx)

    def _pictures(self) -> None:
        """Rank 0: the loss history, its plot and the grid of fixed val photos, per epoch."""
        if not self.ctx.is_main:
            return
        storage.write_json(str(self.run_dir / HISTORY_NAME), self.history)
        storage.write_bytes(str(self.run_dir / LOSS_PLOT_NAME), plots.loss_plot_png(
            self.history, title=f"{self.config.stage}: {self.config.generator.name}"))
        if self.grid_batch is not None:
            l_norm, ab = self.grid_batch
            storage.write_bytes(str(self.run_dir / GRID_NAME),
                                plots.grid_png(l_norm, self.trainer.predict(l_norm), ab))


def _finish(config: TrainConfig, loop: _Loop, manifest: dict[str, Any], image_size: int,
            dataset: str, init_from: str | None, models_root: str | None,
            result_path: Path) -> dict[str, Any]:
    """Rank 0 saves the version (weights, card, history, plot, grid); all ranks return."""
    trainer, ctx = loop.trainer, loop.ctx
    result: dict[str, Any] | None = None
    if ctx.is_main:
        model_id = versions.new_model_id(config.stage)
        effective = replace(config, generator=trainer.generator_spec)
        images = sum(entry["images"] for entry in loop.history)
        card = {"stage": config.stage, "generator": trainer.generator_spec.to_dict(),
                "image_size": image_size, "train_config": effective.to_dict(),
                "dataset": dataset, "dataset_manifest_sha256": manifest_digest(dataset),
                # Issue 9: lineage; the snapshot id names datasets/<id>/ by default.
                "dataset_snapshot": str(manifest.get("inputs_digest", ""))[:12] or None,
                "hardware": {**describe_hardware(trainer.device),
                             "precision": trainer.precision.name, "world_size": ctx.world_size},
                "parent": init_from, "training": {
                    "epochs": config.epochs, "steps": loop.steps,
                    "seconds": round(loop.seconds, 3), "device": str(trainer.device),
                    "precision": trainer.precision.name,
                    "memory_format": "channels_last"
                    if trainer.layout == torch.channels_last else "contiguous",
                    "world_size": ctx.world_size,
                    "images_per_second": round(images / max(loop.seconds, 1e-9), 2),
                    "learning_rate": config.learning_rate, "gan_mode": config.gan_mode,
                    "ema_decay": config.ema_decay,
                    "history": loop.history}}
        url = versions.save_version(trainer.exported_generator, card, model_id=model_id,
                                    models_root=models_root)
        for name in (HISTORY_NAME, LOSS_PLOT_NAME, GRID_NAME):
            local = loop.run_dir / name
            if local.exists():
                storage.write_bytes(storage.join(url, name), local.read_bytes())
        result = {"model_id": model_id, "model_url": url, "stage": config.stage,
                  "epochs": config.epochs, "steps": loop.steps,
                  "seconds": round(loop.seconds, 3), "history": loop.history,
                  "run_dir": str(loop.run_dir), "world_size": ctx.world_size}
        # The final checkpoint stays: asking this run for more epochs continues from it.
        storage.write_json(str(result_path), result)
    result = distributed.broadcast(result, ctx)
    assert result is not None
    return result


def _batches_per_epoch(dataset: str, batch_size: int, world_size: int) -> int:
    count = read_manifest(dataset)["splits"]["train"]["count"]
    return max(1, -(-count // (batch_size * world_size)))

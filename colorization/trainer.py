"""One training step of a stage, written like pix2pix's `optimize_parameters`.

`Trainer.step` runs the generator once, then `update_discriminator` (pix2pix's
`backward_D`) and `update_generator` (`backward_G`). Losses come back as detached tensors
named D_real, D_fake, G_GAN, G_L1; callers sum them as tensors and call `.item()` only when
they log, so a step never waits on the device just to report. With `ema_decay` the step
also updates a moving average of G's weights, which is what a version then keeps.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from colorization import versions
from colorization.devices import Precision, autocast, memory_format
from colorization.distributed import DistContext
from colorization.models import ModelSpec, build_discriminator, build_generator

logger = logging.getLogger(__name__)

# `gan_mode`: the criterion on D's patch logits (pix2pix's GANLoss).
GAN_CRITERIA: dict[str, Callable[[], nn.Module]] = {
    "vanilla": nn.BCEWithLogitsLoss,  # the paper's log-loss on logits
    "lsgan": nn.MSELoss,  # least squares (Mao et al.): steadier gradients when D is sure
}


class GANLoss(nn.Module):
    """The adversarial criterion against an all-real or all-fake patch target."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in GAN_CRITERIA:
            raise ValueError(f"unknown gan_mode {mode!r}; known: {', '.join(GAN_CRITERIA)}")
        self.criterion = GAN_CRITERIA[mode]()

    def forward(self, logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        logits = logits.float()  # [B, 1, H', W']; the loss in fp32 under autocast
        target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
        return self.criterion(logits, target)


class Trainer:
    """Both networks, their optimisers and the GradScaler of one stage."""

    def __init__(self, *, stage_adversarial: bool, generator_spec: ModelSpec,
                 discriminator_spec: ModelSpec, init_from: str | None, models_root: str | None,
                 lr: float, betas: tuple[float, float], l1_weight: float, gan_mode: str,
                 seed: int, image_size: int, device: torch.device, precision: Precision,
                 ctx: DistContext, compile_model: bool = False, ema_decay: float = 0.0) -> None:
        self.device, self.precision, self.l1_weight = device, precision, l1_weight
        self.layout = memory_format(precision)
        if init_from is not None:
            self.generator, card = versions.load_generator(init_from, models_root=models_root)
            self.generator_spec = ModelSpec.from_dict(card["generator"])
        else:
            self.generator = build_generator(generator_spec, seed=seed)
            self.generator_spec = generator_spec
        _warn_if_padded(self.generator, self.generator_spec, image_size)
        self.generator.to(device).to(memory_format=self.layout).train()
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas)
        self.discriminator: nn.Module | None = None
        self.opt_d: torch.optim.Optimizer | None = None
        if stage_adversarial:
            self.discriminator = build_discriminator(discriminator_spec, seed=seed + 1)
            _check_fits(self.discriminator, discriminator_spec, image_size)
            self.discriminator.to(device).to(memory_format=self.layout).train()
            self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas)
        # An exponential moving average of G's weights (and BatchNorm statistics), updated
        # after every step; when on, it is the generator that is saved, shown and evaluated.
        # At a constant rate the GAN's own weights swing from epoch to epoch (hue guesses
        # that come and go); their average keeps the colours that persist.
        self.ema: AveragedModel | None = None
        if ema_decay > 0:
            self.ema = AveragedModel(self.generator, use_buffers=True,
                                     multi_avg_fn=get_ema_multi_avg_fn(ema_decay))
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision.needs_grad_scaler)
        self.gan_loss = GANLoss(gan_mode)
        self.l1 = nn.L1Loss()
        # What the step runs: DDP wrappers average gradients across ranks; torch.compile
        # (optional) fuses kernels. self.generator / self.discriminator stay the plain
        # modules whose state dicts are saved.
        self.run_g: nn.Module = self.generator
        self.run_d: nn.Module | None = self.discriminator
        if ctx.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.run_g = DistributedDataParallel(self.generator, device_ids=ids)
            if self.discriminator is not None:
                self.run_d = DistributedDataParallel(self.discriminator, device_ids=ids)
        if compile_model:
            self.run_g = torch.compile(self.run_g)  # type: ignore[assignment]

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

    def step(self, l_norm: torch.Tensor, ab: torch.Tensor) -> dict[str, torch.Tensor]:
        """One update on L [B, 1, S, S] and target ab [B, 2, S, S]; detached losses."""
        l_norm = l_norm.contiguous(memory_format=self.layout)
        ab = ab.contiguous(memory_format=self.layout)
        with self._autocast():
            fake = self.run_g(l_norm)  # [B, 2, S, S]: G(L)
        losses: dict[str, torch.Tensor] = {}
        if self.discriminator is not None:
            losses.update(self.update_discriminator(l_norm, ab, fake))
        losses.update(self.update_generator(l_norm, ab, fake))
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.generator)  # the first call copies G
        return losses

    @property
    def exported_generator(self) -> nn.Module:
        """The generator a version keeps: the EMA's when it is on, else G itself."""
        return self.generator if self.ema is None else self.ema.module

    def set_lr(self, lr: float) -> None:
        """The rate of both optimisers from now on (the stage's schedule sets it per epoch)."""
        for opt in (self.opt_g, self.opt_d):
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = lr

    def update_discriminator(self, l_norm: torch.Tensor, ab: torch.Tensor,
                             fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """backward_D: real pairs (L, ab) -> real, generated pairs (L, G(L)) -> fake.

        G(L) is detached: D's loss sends no gradient into the generator.
        """
        assert self.run_d is not None and self.opt_d is not None
        with self._autocast():
            # Fake: D(L, G(L)) against "fake" on every patch. [B, 1, H', W'] logits.
            pred_fake = self.run_d(torch.cat([l_norm, fake.detach()], dim=1))
            loss_fake = self.gan_loss(pred_fake, False)
            # Real: D(L, ab) against "real".
            pred_real = self.run_d(torch.cat([l_norm, ab], dim=1))
            loss_real = self.gan_loss(pred_real, True)
            # Halved, as in pix2pix: D learns at half G's rate.
            loss_d = 0.5 * (loss_fake + loss_real)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(loss_d).backward()
        self.scaler.step(self.opt_d)
        return {"D_real": loss_real.detach(), "D_fake": loss_fake.detach()}

    def update_generator(self, l_norm: torch.Tensor, ab: torch.Tensor,
                         fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """backward_G: G(L) should fool D (GAN stage) and match ab in L1 (x l1_weight)."""
        losses: dict[str, torch.Tensor] = {}
        with self._autocast():
            # L1 to the target, in fp32: the term that carries the colours.
            loss_l1 = self.l1(fake.float(), ab)
            loss_g = loss_l1
            if self.discriminator is not None:
                # D is frozen: its weights get no gradient from G's step, but the gradient
                # flows through it into G. The plain module, not the DDP wrapper: D's
                # weights take no part in this backward, so no reduction is owed.
                self.discriminator.requires_grad_(False)
                pred_fake = self.discriminator(torch.cat([l_norm, fake], dim=1))
                loss_gan = self.gan_loss(pred_fake, True)
                loss_g = loss_gan + self.l1_weight * loss_l1
                losses["G_GAN"] = loss_gan.detach()
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss_g).backward()
        if self.discriminator is not None:
            self.discriminator.requires_grad_(True)
        self.scaler.step(self.opt_g)
        losses["G_L1"] = loss_l1.detach()
        return losses

    @torch.no_grad()
    def predict(self, l_norm: torch.Tensor) -> torch.Tensor:
        """ab [B, 2, S, S] for L [B, 1, S, S] by the exported generator, in eval mode (as
        inference runs it)."""
        net = self.exported_generator
        net.eval()
        try:
            with self._autocast():
                return net(l_norm.to(self.device)).float()
        finally:
            net.train()

    def state(self) -> dict[str, Any]:
        state = {"generator": self.generator.state_dict(), "opt_g": self.opt_g.state_dict(),
                 "scaler": self.scaler.state_dict()}
        if self.discriminator is not None and self.opt_d is not None:
            state.update(discriminator=self.discriminator.state_dict(),
                         opt_d=self.opt_d.state_dict())
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()  # includes n_averaged
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.scaler.load_state_dict(state["scaler"])
        if self.discriminator is not None and self.opt_d is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["opt_d"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])


def _check_fits(discriminator: nn.Module, spec: ModelSpec, image_size: int) -> None:
    # A 70x70 PatchGAN needs crops of at least ~32 px; say so instead of a conv error.
    try:
        with torch.no_grad():
            discriminator.eval()(torch.zeros(1, 3, image_size, image_size))
    except RuntimeError as exc:
        raise ValueError(f"image_size {image_size} is too small for discriminator "
                         f"{spec.name!r}: {exc}") from exc


def _warn_if_padded(generator: nn.Module, spec: ModelSpec, image_size: int) -> None:
    """A U-Net built for 256 px fed 128-px crops pads them to 256: 4x the work, and a net
    that never sees its deepest levels used. Allowed, but never silently."""
    multiple = int(getattr(generator, "size_multiple", 1))
    padded = -(-image_size // multiple) * multiple
    if padded != image_size:
        logger.warning("generator %s pads %d-px crops to %d px (%.1fx the pixels); a "
                       "generator built for %d px (the default, `auto`) avoids it",
                       spec.name, image_size, padded, (padded / image_size) ** 2, image_size)

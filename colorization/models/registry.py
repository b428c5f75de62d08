"""Named model builders, and the spec that names one in configs and model cards.

Registering an architecture is one line: a name mapped to a callable that takes keyword
options and returns an ``nn.Module``. A named variant (``unet_256``) is a `Variant`: the
options that define it are fixed, so a card can never say ``unet_256`` for a 64-px net
(as torchvision's builders refuse ``num_classes`` that contradict their weights); the
generic entries (``unet``, ``patchgan``) take every option.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn

from colorization.models.patchgan import PatchDiscriminator
from colorization.models.resnet_unet import ResNet18UNet
from colorization.models.unet import UNetGenerator

__all__ = [
    "Variant",
    "DEFAULT_DISCRIMINATOR",
    "DEFAULT_GENERATOR",
    "DISCRIMINATORS",
    "GENERATORS",
    "ModelSpec",
    "build_discriminator",
    "build_generator",
    "generator_for_size",
    "init_pix2pix_weights",
    "without_pretrained",
]

DEFAULT_GENERATOR = "unet_256"
# Training's default generator name: resolved against the dataset's image size by
# `generator_for_size`, so 128-px crops get unet_128 and never a padded unet_256.
AUTO_GENERATOR = "auto"
DEFAULT_DISCRIMINATOR = "patchgan_70"


@dataclass(frozen=True)
class Variant:
    """A named variant of an architecture: `fixed` options define it and cannot be overridden;
    `defaults` can."""

    cls: Callable[..., nn.Module]
    fixed: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, **options: Any) -> nn.Module:
        return self.cls(**{**self.defaults, **options, **self.fixed})

    def check(self, spec: ModelSpec, kind: str) -> None:
        """Refuse options that contradict what the variant's name promises."""
        clashes = {k: v for k, v in spec.options.items() if k in self.fixed and v != self.fixed[k]}
        if clashes:
            fixed = ", ".join(f"{k}={self.fixed[k]!r}" for k in clashes)
            raise ValueError(f"{kind} {spec.name!r} is defined by {fixed}; it cannot be "
                             f"overridden with {clashes} (use the generic "
                             f"{self.cls.__name__} entry instead)")


GENERATORS: dict[str, Callable[..., nn.Module]] = {
    # Any depth and width: the name a card gives a U-Net that is not one of the variants.
    "unet": partial(UNetGenerator, num_downs=8, base_channels=64),
    # pix2pix's named variants: 8 / 7 downsamplings reach 1x1 at 256 / 128 px.
    "unet_256": Variant(UNetGenerator, fixed={"num_downs": 8}, defaults={"base_channels": 64}),
    "unet_128": Variant(UNetGenerator, fixed={"num_downs": 7}, defaults={"base_channels": 64}),
    # ResNet18 encoder (ImageNet weights, a file, or none) + bilinear decoder with skips.
    "resnet18_unet": ResNet18UNet,
}

DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {
    "patchgan": partial(PatchDiscriminator, n_layers=3, base_channels=64),
    # 3 strided layers give the 70x70 receptive field the name promises.
    "patchgan_70": Variant(PatchDiscriminator, fixed={"n_layers": 3},
                           defaults={"base_channels": 64}),
}


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture name plus keyword options overriding its defaults."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Own a copy, so mutating the caller's dict later cannot change this spec.
        object.__setattr__(self, "options", dict(self.options))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"name": ..., "options": {...}}``."""
        return {"name": self.name, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Inverse of :meth:`to_dict`; rejects missing names and unknown keys."""
        unknown = set(data) - {"name", "options"}
        if unknown:
            raise ValueError(f"unknown ModelSpec keys: {sorted(unknown)}")
        if not isinstance(data.get("name"), str):
            raise ValueError(f"ModelSpec needs a string 'name', got {data.get('name')!r}")
        return cls(name=data["name"], options=dict(data.get("options") or {}))


def init_pix2pix_weights(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """pix2pix ``init_weights(init_type="normal", gain=0.02)``, in place.

    Conv / ConvTranspose / Linear weights ~ N(0, 0.02), BatchNorm weights ~ N(1, 0.02),
    all biases 0. ``generator`` None draws from torch's global RNG.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.normal_(module.weight, 0.0, 0.02, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02, generator=generator)
            else:
                continue
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def build_generator(spec: ModelSpec | None = None, *, seed: int | None = None) -> nn.Module:
    """Build and initialise a generator; ``None`` means ``ModelSpec(DEFAULT_GENERATOR)``."""
    return _build(GENERATORS, "generator", spec or ModelSpec(DEFAULT_GENERATOR), seed)


def build_discriminator(spec: ModelSpec | None = None, *, seed: int | None = None) -> nn.Module:
    """Build and initialise a discriminator; ``None`` means ``ModelSpec(DEFAULT_DISCRIMINATOR)``."""
    return _build(DISCRIMINATORS, "discriminator", spec or ModelSpec(DEFAULT_DISCRIMINATOR), seed)


def _build(
    registry: Mapping[str, Callable[..., nn.Module]], kind: str, spec: ModelSpec, seed: int | None
) -> nn.Module:
    """Look up, check options, construct, initialise.

    With a seed the weights come from a local ``torch.Generator`` and the global
    RNG state is restored afterwards (module constructors draw their own default
    init from it), so seeded builds neither depend on nor disturb other code's
    randomness. A model that must not get the generic init (e.g. one holding
    pretrained weights) can define ``init_weights(generator)`` to do its own.
    """
    if spec.name not in registry:
        raise ValueError(f"unknown {kind} {spec.name!r}; known: {', '.join(sorted(registry))}")
    factory = registry[spec.name]
    _check_options(factory, spec, kind)
    if isinstance(factory, Variant):
        factory.check(spec, kind)

    if seed is None:
        model = factory(**spec.options)
        _initialise(model, None)
        return model
    with torch.random.fork_rng(devices=[]):
        model = factory(**spec.options)
    _initialise(model, torch.Generator().manual_seed(seed))
    return model


def _initialise(model: nn.Module, generator: torch.Generator | None) -> None:
    custom = getattr(model, "init_weights", None)
    if callable(custom):
        custom(generator)
    else:
        init_pix2pix_weights(model, generator)


def _check_options(factory: Callable[..., nn.Module], spec: ModelSpec, kind: str) -> None:
    """Name an unknown option up front rather than let a constructor fail obscurely."""
    target = factory.cls if isinstance(factory, Variant) else factory
    params = inspect.signature(target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # the factory takes **kwargs: it validates itself
    unknown = sorted(set(spec.options) - set(params))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {kind} {spec.name!r}; "
                         f"accepted: {', '.join(sorted(params))}")


def generator_for_size(image_size: int) -> ModelSpec:
    """The pix2pix U-Net built for `image_size`: unet_256 / unet_128 by name, else the generic
    `unet` deep enough to reach 1x1 (a non-power-of-two size is padded up to the next one)."""
    depth = max(1, (image_size - 1).bit_length())  # ceil(log2(size))
    for name, factory in GENERATORS.items():
        if isinstance(factory, Variant) and factory.fixed.get("num_downs") == depth:
            return ModelSpec(name)
    return ModelSpec("unet", {"num_downs": depth})


def without_pretrained(spec: ModelSpec) -> ModelSpec:
    """`spec` with weights="none" when the architecture takes `weights`: for building a net
    whose saved state dict is loaded right after (no download, nothing read twice)."""
    factory = GENERATORS.get(spec.name)
    target = factory.cls if isinstance(factory, Variant) else factory
    if target is not None and "weights" in inspect.signature(target).parameters:
        return ModelSpec(spec.name, {**spec.options, "weights": "none"})
    return spec

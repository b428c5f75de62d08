"""Models: the pix2pix U-Net generator, the PatchGAN discriminator and their registry."""

from colorization.models.patchgan import PatchDiscriminator, receptive_field
from colorization.models.registry import (
    DEFAULT_DISCRIMINATOR,
    DEFAULT_GENERATOR,
    DISCRIMINATORS,
    GENERATORS,
    ModelSpec,
    Variant,
    build_discriminator,
    build_generator,
    init_pix2pix_weights,
)
from colorization.models.unet import UNetGenerator

__all__ = [
    "DEFAULT_DISCRIMINATOR",
    "DEFAULT_GENERATOR",
    "DISCRIMINATORS",
    "GENERATORS",
    "ModelSpec",
    "PatchDiscriminator",
    "UNetGenerator",
    "Variant",
    "build_discriminator",
    "build_generator",
    "init_pix2pix_weights",
    "receptive_field",
]

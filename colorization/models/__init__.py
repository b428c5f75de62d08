"""Models: the pix2pix U-Net generator, the PatchGAN discriminator and their registry."""

from colorization.models.patchgan import PatchDiscriminator, receptive_field
from colorization.models.registry import (
    AUTO_GENERATOR,
    DEFAULT_DISCRIMINATOR,
    DEFAULT_GENERATOR,
    DISCRIMINATORS,
    GENERATORS,
    ModelSpec,
    Variant,
    build_discriminator,
    build_generator,
    generator_for_size,
    init_pix2pix_weights,
    without_pretrained,
)
from colorization.models.resnet_unet import ResNet18UNet, load_resnet18_state
from colorization.models.unet import UNetGenerator

__all__ = [
    "AUTO_GENERATOR",
    "ResNet18UNet",
    "generator_for_size",
    "load_resnet18_state",
    "without_pretrained",
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

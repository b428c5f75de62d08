"""Model registry: defaults, overrides, errors, ModelSpec JSON round trip, seeded init."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
from torch import nn

from colorization.models import (
    DEFAULT_DISCRIMINATOR,
    DEFAULT_GENERATOR,
    DISCRIMINATORS,
    GENERATORS,
    ModelSpec,
    PatchDiscriminator,
    UNetGenerator,
    build_discriminator,
    build_generator,
)

TINY_G = ModelSpec("unet", {"num_downs": 4, "base_channels": 8})
TINY_D = ModelSpec("patchgan_70", {"base_channels": 8})


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_defaults_are_registered_and_build() -> None:
    assert DEFAULT_GENERATOR == "unet_256" and DEFAULT_GENERATOR in GENERATORS
    assert DEFAULT_DISCRIMINATOR == "patchgan_70" and DEFAULT_DISCRIMINATOR in DISCRIMINATORS
    assert {"unet_256", "unet_128"} <= set(GENERATORS)

    generator = build_generator(seed=0)
    assert isinstance(generator, UNetGenerator)
    assert generator.num_downs == 8 and generator.in_channels == 1 and generator.out_channels == 2
    discriminator = build_discriminator(seed=0)
    assert isinstance(discriminator, PatchDiscriminator)
    assert discriminator.n_layers == 3 and discriminator.receptive_field == 70
    assert n_params(discriminator) == 2_765_633

    assert build_generator(ModelSpec("unet_128"), seed=0).num_downs == 7


def test_options_override_registered_defaults() -> None:
    generator = build_generator(TINY_G, seed=0)
    assert isinstance(generator, UNetGenerator)
    assert generator.num_downs == 4 and generator.size_multiple == 16
    assert n_params(generator) < 100_000  # vs 54,409,858 for the default
    assert len(generator.downs) == 4
    with torch.no_grad():
        assert generator.eval()(torch.zeros(1, 1, 20, 12)).shape == (1, 2, 20, 12)

    spec = ModelSpec("patchgan", {"n_layers": 2, "base_channels": 4})
    discriminator = build_discriminator(spec, seed=0)
    assert discriminator.receptive_field == 34
    assert n_params(discriminator) < n_params(build_discriminator(TINY_D, seed=0))


def test_unknown_name_is_a_value_error_listing_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unet_512") as info:
        build_generator(ModelSpec("unet_512"))
    assert "unet_256" in str(info.value) and "unet_128" in str(info.value)
    with pytest.raises(ValueError, match="patchgan_70"):
        build_discriminator(ModelSpec("unet_256"))


def test_unknown_option_is_named() -> None:
    with pytest.raises(ValueError, match="num_layers"):
        build_generator(ModelSpec("unet_256", {"num_layers": 3}))
    with pytest.raises(ValueError, match="ngf"):
        build_discriminator(ModelSpec("patchgan_70", {"ngf": 3}))


def test_a_variant_refuses_overrides_of_what_defines_it() -> None:
    # A card must never say unet_256 for a 64-px net, nor patchgan_70 for a 34-px one.
    with pytest.raises(ValueError, match="'unet_256' is defined by num_downs=8"):
        build_generator(ModelSpec("unet_256", {"num_downs": 6}))
    with pytest.raises(ValueError, match="'unet_128' is defined by num_downs=7"):
        build_generator(ModelSpec("unet_128", {"num_downs": 8}))
    with pytest.raises(ValueError, match="'patchgan_70' is defined by n_layers=3"):
        build_discriminator(ModelSpec("patchgan_70", {"n_layers": 2}))
    # Restating the defining value, or overriding what does not define it, is fine.
    restated = ModelSpec("unet_128", {"num_downs": 7, "base_channels": 4})
    assert build_generator(restated).num_downs == 7
    assert build_discriminator(ModelSpec("patchgan_70", {"base_channels": 4})).receptive_field == 70
    assert build_generator(ModelSpec("unet", {"num_downs": 6, "base_channels": 4})).num_downs == 6


def test_model_spec_round_trips_through_json() -> None:
    spec = ModelSpec("unet", {"num_downs": 4, "base_channels": 8, "dropout": 0.0})
    text = json.dumps(spec.to_dict())
    assert ModelSpec.from_dict(json.loads(text)) == spec
    named = ModelSpec("unet_128")
    assert ModelSpec.from_dict(json.loads(json.dumps(named.to_dict()))) == named
    assert ModelSpec.from_dict({"name": "unet_128"}) == ModelSpec("unet_128")


def test_model_spec_is_frozen_and_owns_its_options() -> None:
    options = {"num_downs": 4}
    spec = ModelSpec("unet_256", options)
    options["num_downs"] = 5
    assert spec.options == {"num_downs": 4}
    with pytest.raises(AttributeError):
        spec.name = "unet_128"  # type: ignore[misc]
    with pytest.raises(ValueError, match="colour"):
        ModelSpec.from_dict({"name": "unet_256", "colour": "red"})
    with pytest.raises(ValueError, match="name"):
        ModelSpec.from_dict({"options": {}})


def test_same_seed_same_weights_different_seed_different() -> None:
    assert same_weights(build_generator(TINY_G, seed=7), build_generator(TINY_G, seed=7))
    assert not same_weights(build_generator(TINY_G, seed=7), build_generator(TINY_G, seed=8))
    assert same_weights(build_discriminator(TINY_D, seed=7), build_discriminator(TINY_D, seed=7))
    assert not same_weights(build_discriminator(TINY_D, seed=7),
                            build_discriminator(TINY_D, seed=8))


def test_seeded_build_leaves_the_global_rng_alone() -> None:
    before = torch.get_rng_state()
    build_generator(TINY_G, seed=1)
    build_discriminator(TINY_D, seed=1)
    assert torch.equal(torch.get_rng_state(), before)
    # ...and does not depend on it either.
    torch.manual_seed(123)
    a = build_generator(TINY_G, seed=1)
    torch.manual_seed(456)
    assert same_weights(a, build_generator(TINY_G, seed=1))


def test_unseeded_builds_differ() -> None:
    assert not same_weights(build_generator(TINY_G), build_generator(TINY_G))


def test_pix2pix_initialisation() -> None:
    model = build_generator(ModelSpec("unet", {"num_downs": 5, "base_channels": 16}), seed=0)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert abs(weights.mean().item()) < 2e-3
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert all(m.bias is None or not m.bias.any() for m in convs)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    gammas = torch.cat([m.weight for m in norms])
    assert gammas.mean().item() == pytest.approx(1.0, abs=5e-3)
    assert gammas.std().item() == pytest.approx(0.02, rel=0.2)
    assert not torch.cat([m.bias for m in norms]).any()


def test_registering_an_architecture_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GENERATORS, "unet_tiny",
                        partial(UNetGenerator, num_downs=3, base_channels=4))
    model = build_generator(ModelSpec("unet_tiny", {"dropout": 0.0}), seed=0)
    assert isinstance(model, UNetGenerator) and model.num_downs == 3

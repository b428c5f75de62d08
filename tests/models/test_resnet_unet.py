"""resnet18_unet: torchvision's resnet18 as the encoder, weights from a file or a clear error."""

from __future__ import annotations

import socket

import pytest
import torch
from torchvision.models import resnet18

from colorization import versions
from colorization.models import ModelSpec, build_generator, without_pretrained
from colorization.train import TrainConfig, train_stage


@pytest.fixture
def resnet_file(tmp_path) -> tuple[str, dict[str, torch.Tensor]]:
    """A resnet18 state dict file from a randomly initialised torchvision resnet18."""
    torch.manual_seed(123)
    state = resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    return str(path), state


def test_encoder_comes_from_the_file_with_a_summed_stem(resnet_file):
    path, state = resnet_file
    model = build_generator(ModelSpec("resnet18_unet", {"weights": path}), seed=0)
    # A gray pixel v is the RGB pixel (v, v, v): the 1-channel filter is the sum over RGB.
    assert torch.allclose(model.stem[0].weight, state["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(model.stem[1].running_var, state["bn1.running_var"])
    ours = model.layers[3].state_dict()
    for key, value in ours.items():
        assert torch.equal(value, state[f"layer4.{key}"]), key
    # Output: ab in (-1, 1) at the input's size, also for sizes that are not multiples of 32.
    out = model.eval()(torch.rand(2, 1, 40, 72) * 2 - 1)
    assert out.shape == (2, 2, 40, 72) and out.abs().max() < 1


def test_trains_from_the_weights_file_and_reloads_without_it(resnet_file, tiny_dataset,
                                                            tmp_path):
    path, _ = resnet_file
    spec = ModelSpec("resnet18_unet", {"weights": path, "decoder_width": 32})
    result = train_stage(TrainConfig(generator=spec, epochs=1, batch_size=16),
                         dataset=tiny_dataset)
    card = versions.read_card(result["model_id"])
    assert card["generator"] == spec.to_dict() and card["train_config"]["lr"] is None
    assert card["training"]["learning_rate"] == 1e-4  # the recipe's rate for this encoder
    # The saved version loads even where the weights file is gone.
    (tmp_path / "resnet18.pth").unlink()
    model, _ = versions.load_generator(result["model_id"])
    assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 2, 32, 32)
    assert without_pretrained(spec).options["weights"] == "none"


def test_imagenet_offline_without_a_cache_names_both_ways_out(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty cache

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(socket, "create_connection", offline)  # no network, at once
    with pytest.raises(OSError) as info:
        build_generator(ModelSpec("resnet18_unet", {"weights": "imagenet"}))
    message = str(info.value)
    assert "not cached at" in message and str(tmp_path / "torch") in message
    assert "connected machine" in message and "weights=<path or URL" in message


def test_bad_weights_file_is_named(tmp_path):
    bad = tmp_path / "not-resnet.pt"
    torch.save({"w": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not a resnet18 state dict"):
        build_generator(ModelSpec("resnet18_unet", {"weights": str(bad)}))
    with pytest.raises(FileNotFoundError, match="no such file"):
        build_generator(ModelSpec("resnet18_unet", {"weights": str(tmp_path / "missing")}))

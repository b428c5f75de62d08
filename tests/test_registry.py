"""Model versions: save, resolve, promote, champion pointer."""

from __future__ import annotations

import pytest
import torch
from support import TINY_GENERATOR

from colorization import paths, registry, storage
from colorization.models import build_generator


def _save(stage: str = "pretrain") -> str:
    generator = build_generator(TINY_GENERATOR, seed=1)
    model_id = registry.new_model_id(stage)
    registry.save_version(generator, {"stage": stage, "generator": TINY_GENERATOR.to_dict(),
                                      "image_size": 32}, model_id=model_id)
    return model_id


def test_save_and_load_round_trip():
    model_id = _save()
    url = registry.resolve(model_id)
    assert url == storage.join(paths.models_root(), model_id)
    model, card = registry.load_generator(model_id)
    assert card["model_id"] == model_id and card["metrics"] == {} and not model.training
    expected = build_generator(TINY_GENERATOR, seed=1).state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    # A version folder given by path resolves too.
    assert registry.resolve(url) == url


def test_champion_pointer_and_promotion_history():
    assert registry.champion() is None
    with pytest.raises(FileNotFoundError, match="no promoted model"):
        registry.resolve(None)
    first, second = _save(), _save("gan")
    assert registry.promote_if_none(first) is True
    assert registry.promote_if_none(second) is False
    assert registry.champion() == first
    registry.promote(second, reason="better")
    assert registry.champion() == second and registry.resolve(None).endswith(second)
    pointer = storage.read_json(storage.join(paths.models_root(), "champion"))
    assert [entry["model_id"] for entry in pointer["history"]] == [first, second]
    assert [card["model_id"] for card in registry.list_versions()] == sorted([first, second])


def test_unknown_models_are_named():
    assert registry.list_versions() == []
    with pytest.raises(FileNotFoundError, match="'nope'"):
        registry.resolve("nope")
    with pytest.raises(FileNotFoundError, match="no such model version"):
        registry.promote("nope")


def test_update_card_merges():
    model_id = _save()
    registry.update_card(model_id, {"metrics": {"psnr": 21.5}})
    card = registry.read_card(model_id)
    assert card["metrics"] == {"psnr": 21.5} and card["stage"] == "pretrain"


def test_versions_and_champion_in_s3(s3_bucket, monkeypatch):
    monkeypatch.setenv("COLORIZATION_HOME", storage.join(s3_bucket, "colorization"))
    assert paths.models_root() == storage.join(s3_bucket, "colorization/models")
    assert registry.list_versions() == []
    model_id = _save()
    assert registry.promote_if_none(model_id)
    model, card = registry.load_generator(None)
    assert card["model_id"] == model_id and registry.resolve(None).startswith("s3://")
    assert [c["model_id"] for c in registry.list_versions()] == [model_id]

"""Model versions: save, resolve, promote, champion pointer."""

from __future__ import annotations

import pytest
import torch
from support import TINY_GENERATOR

from colorization import paths, storage, versions
from colorization.constants import CHAMPION_POINTER
from colorization.models import build_generator


def _save(stage: str = "pretrain") -> str:
    generator = build_generator(TINY_GENERATOR, seed=1)
    model_id = versions.new_model_id(stage)
    versions.save_version(generator, {"stage": stage, "generator": TINY_GENERATOR.to_dict(),
                                      "image_size": 32}, model_id=model_id)
    return model_id


def test_save_and_load_round_trip():
    model_id = _save()
    url = versions.resolve(model_id)
    assert url == storage.join(paths.models_root(), model_id)
    model, card = versions.load_generator(model_id)
    assert card["model_id"] == model_id and card["metrics"] == {} and not model.training
    expected = build_generator(TINY_GENERATOR, seed=1).state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    # A version folder given by path resolves too.
    assert versions.resolve(url) == url


def test_champion_pointer_and_promotion_history():
    assert versions.champion() is None
    with pytest.raises(FileNotFoundError, match="no promoted model"):
        versions.resolve(None)
    first, second = _save(), _save("gan")
    assert versions.promote_if_none(first) is True
    assert versions.promote_if_none(second) is False
    assert versions.champion() == first
    versions.promote(second, reason="better")
    assert versions.champion() == second and versions.resolve(None).endswith(second)
    pointer = storage.read_json(storage.join(paths.models_root(), "champion"))
    assert [entry["model_id"] for entry in pointer["history"]] == [first, second]
    assert [card["model_id"] for card in versions.list_versions()] == sorted([first, second])


def test_unknown_models_are_named():
    assert versions.list_versions() == []
    with pytest.raises(FileNotFoundError, match="'nope'"):
        versions.resolve("nope")
    with pytest.raises(FileNotFoundError, match="no such model version"):
        versions.promote("nope")


def test_update_card_merges():
    model_id = _save()
    versions.update_card(model_id, {"metrics": {"psnr": 21.5}})
    card = versions.read_card(model_id)
    assert card["metrics"] == {"psnr": 21.5} and card["stage"] == "pretrain"


def test_versions_and_champion_in_s3(s3_bucket, monkeypatch):
    monkeypatch.setenv("COLORIZATION_HOME", storage.join(s3_bucket, "colorization"))
    assert paths.models_root() == storage.join(s3_bucket, "colorization/models")
    assert versions.list_versions() == []
    model_id = _save()
    assert versions.promote_if_none(model_id)
    model, card = versions.load_generator(None)
    assert card["model_id"] == model_id and versions.resolve(None).startswith("s3://")
    assert [c["model_id"] for c in versions.list_versions()] == [model_id]


def test_failed_promotion_keeps_the_previous_champion(monkeypatch):
    """Guards the champion pointer against being deleted before it is rewritten: a promotion
    whose pointer write fails must leave the previous champion in place."""
    first, second = _save(), _save("gan")
    versions.promote(first, reason="first")
    pointer = storage.join(paths.models_root(), CHAMPION_POINTER)
    real_write = storage.write_bytes

    def failing_write(url: str, data: bytes) -> None:
        if url == pointer:
            raise OSError("simulated crash while writing the pointer")
        real_write(url, data)

    monkeypatch.setattr(storage, "write_bytes", failing_write)
    with pytest.raises(OSError, match="simulated crash"):
        versions.promote(second, reason="better")
    monkeypatch.setattr(storage, "write_bytes", real_write)
    assert versions.champion() == first
    assert [entry["model_id"] for entry in storage.read_json(pointer)["history"]] == [first]


# --- Issue 9: lineage and the decision history ------------------------------------------------
def test_training_cards_carry_their_lineage(tiny_model, tiny_dataset):
    import subprocess
    from pathlib import Path

    from colorization.shards import manifest_digest, read_manifest

    models_root, model_id = tiny_model
    card = versions.read_card(model_id, models_root=models_root)
    assert card["dataset"] == tiny_dataset
    assert card["dataset_snapshot"] == read_manifest(tiny_dataset)["inputs_digest"][:12]
    assert card["dataset_manifest_sha256"] == manifest_digest(tiny_dataset)
    assert card["train_config"]["generator"] == card["generator"]
    assert card["training"]["seconds"] > 0 and card["training"]["epochs"] == 2
    hardware = card["hardware"]
    assert hardware["device"] == "cpu" and hardware["device_name"]
    assert hardware["precision"] == card["training"]["precision"]
    # Run from this checkout, the card names its commit.
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(versions.__file__).parent, check=True).stdout.strip()
    assert card["git_commit"] == head and isinstance(card["git_dirty"], bool)


def test_code_commit_from_the_environment_or_unknown_without_git(monkeypatch, tmp_path):
    monkeypatch.setenv("COLORIZATION_GIT_COMMIT", "abc123")
    assert versions.code_commit() == {"git_commit": "abc123", "git_dirty": None}
    monkeypatch.delenv("COLORIZATION_GIT_COMMIT")
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on the path: unknown, no failure
    versions._checkout_commit.cache_clear()
    try:
        assert versions.code_commit() == {"git_commit": None, "git_dirty": None}
        assert versions.read_card(_save())["git_commit"] is None
    finally:
        versions._checkout_commit.cache_clear()


def test_history_keeps_forced_promotions_and_refusals():
    first, second = _save(), _save("gan")
    with pytest.raises(ValueError, match="needs a champion"):
        versions.record_decision({"challenger": first, "promoted": False})
    versions.promote(first, reason="by hand")
    refused = versions.record_decision({"challenger": second, "champion": first,
                                        "promoted": False, "forced": False, "reason": "worse"})
    assert refused["model_id"] == first and versions.champion() == first
    pointer = versions.champion_pointer()
    assert pointer is not None and pointer["reason"] == "by hand"  # the champion's own
    versions.promote(second, reason="ops decided")
    assert [(e["challenger"], e["promoted"], e["forced"], e["model_id"])
            for e in versions.history()] == [(first, True, True, first),
                                             (second, False, False, first),
                                             (second, True, True, second)]

"""The retrain flow end to end under a real (temporary) Prefect API."""

from __future__ import annotations

import json

import pytest
from prefect.artifacts import Artifact
from prefect.client.orchestration import get_client
from support import TINY_GENERATOR

from colorization import versions
from colorization.shards import read_manifest
from flows.retrain import retrain

SETTINGS = dict(image_size=32, generator=TINY_GENERATOR.name,
                generator_options=TINY_GENERATOR.options, pretrain_epochs=2, gan_epochs=1,
                batch_size=16, device="cpu")


def test_retrain_chains_the_stages_and_promotes_the_first_model(prefect_api, fixture_photos,
                                                               fiftyone_env):
    summary = retrain(source=str(fixture_photos), **SETTINGS)
    model_id = summary["model_id"]
    assert summary["promoted"] is True and versions.champion() == model_id
    assert read_manifest(summary["dataset"])["splits"]["val"]["count"] == 8
    pretrain, gan = summary["stages"]["pretrain"], summary["stages"]["gan"]
    assert gan["model_id"] == model_id and gan["steps"] == 2 and pretrain["steps"] == 4
    card = versions.read_card(model_id)
    assert card["parent"] == pretrain["model_id"] and card["stage"] == "gan"
    assert card["metrics"] == summary["metrics"] and card["metrics"]["images"] == 8
    assert card["dataset"] == summary["dataset"]
    # The card compares the model with its pretrain parent and the grayscale baseline.
    assert set(card["evaluation"]["summary"]) >= {"model", "parent", "grayscale"}
    assert card["evaluation"]["subjects"]["parent"]["model_id"] == pretrain["model_id"]

    # The review dataset is built after evaluation and linked in the run's artifacts.
    assert summary["review"] == f"colorization-{model_id}"
    from colorization import review

    assert review.model_summary(summary["review"])["groups"] == 8
    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_artifacts() if a.key}
    assert summary["review"] in artifacts[f"review-{model_id}"].data
    report = artifacts["retrain-report"].data
    assert summary["review"] in report and "| ciede2000 |" in report
    table = artifacts[f"evaluation-{model_id}-table"].data
    assert "ciede2000" in str(table)
    # Each stage published its losses and pictures as artifacts of the flow run.
    losses = Artifact.get("gan-losses")
    assert losses is not None and json.loads(losses.data)[0]["epoch"] == 1
    assert {"D_real", "D_fake", "G_GAN", "G_L1"} <= set(json.loads(losses.data)[0])
    pictures = Artifact.get("pretrain-pictures")
    assert pictures is not None and pictures.data.count("data:image/png;base64,") == 2

    assert summary["decision"]["reason"] == "first model"
    assert versions.history()[-1]["challenger"] == model_id
    gate_artifact = artifacts["promotion-gate"].data
    assert model_id in gate_artifact and "promoted to champion" in gate_artifact

    # A second run with the pretrain stage alone (gan_epochs=0: a valid challenger) reuses
    # the snapshot, and the gate decides between it and the champion on that snapshot.
    again = retrain(source=str(fixture_photos), review=False,
                    **{**SETTINGS, "gan_epochs": 0})
    assert again["dataset"] == summary["dataset"] and again["model_id"] != model_id
    assert set(again["stages"]) == {"pretrain"}
    assert versions.read_card(again["model_id"])["stage"] == "pretrain"
    decision = again["decision"]
    assert decision["challenger"] == again["model_id"] and decision["champion"] == model_id
    assert decision["dataset"] == summary["dataset"]
    # Both models' numbers on the same snapshot; the champion's from the evaluation that ran
    # it beside the challenger.
    ours, theirs = decision["metrics"]["challenger"], decision["metrics"]["champion"]
    assert ours == again["metrics"]
    evaluation = versions.read_card(again["model_id"])["evaluation"]
    assert evaluation["subjects"]["champion"]["model_id"] == model_id
    assert theirs["ciede2000"] == evaluation["summary"]["champion"]["ciede2000"]["mean"]
    passed = (ours["ciede2000"] <= theirs["ciede2000"]
              and ours["colorfulness_gap"] <= theirs["colorfulness_gap"] + 2.0)
    assert again["promoted"] is decision["promoted"] is passed
    assert versions.champion() == (again["model_id"] if passed else model_id)
    assert versions.history()[-1] == decision
    assert again["review"] is None
    assert len(versions.list_versions()) == 3
    with get_client(sync_client=True) as client:
        latest = [a for a in client.read_artifacts() if a.key == "promotion-gate"]
    assert any(again["model_id"] in str(a.data) and "| ciede2000 |" in str(a.data)
               for a in latest)


def test_retrain_config_refuses_bad_input_before_any_work():
    from flows.retrain import RetrainConfig

    assert RetrainConfig(source="photos", gan_epochs=0).gate().device == "auto"
    with pytest.raises(ValueError, match="nothing to train"):
        RetrainConfig(source="photos", pretrain_epochs=0, gan_epochs=0)
    with pytest.raises(ValueError, match="image_size must be at least 1"):
        RetrainConfig(source="photos", image_size=0)
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        RetrainConfig(source="photos", precision="fp8")
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        RetrainConfig(source="photos", ema_decay=1.5)

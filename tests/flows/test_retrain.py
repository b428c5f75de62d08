"""The retrain flow end to end under a real (temporary) Prefect API."""

from __future__ import annotations

import json

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

    # A second run reuses the snapshot, trains a new model and leaves the champion alone.
    again = retrain(source=str(fixture_photos), review=False, **SETTINGS)
    assert again["dataset"] == summary["dataset"] and again["model_id"] != model_id
    assert again["promoted"] is False and versions.champion() == model_id
    assert again["review"] is None
    assert len(versions.list_versions()) == 4

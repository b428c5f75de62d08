"""The promotion gate: refuses a worse challenger, promotes a better one, records both."""

from __future__ import annotations

import pytest
from support import TINY_GENERATOR

from colorization import gate, paths, storage, versions
from colorization.constants import GATE_CIEDE2000_MARGIN, GATE_COLORFULNESS_GAP_MARGIN
from colorization.evaluate import EvalConfig, evaluate_model
from colorization.gate import Criterion, GateConfig, decide
from colorization.models import build_generator
from colorization.shards import manifest_digest

CPU = GateConfig(device="cpu")


@pytest.fixture
def trained(better_than_gray) -> str:
    """The trained model, copied into this test's models root."""
    source_root, model_id = better_than_gray
    for url in storage.list_files(storage.join(source_root, model_id)):
        name = storage.relative_key(url, source_root)
        storage.write_bytes(storage.join(paths.models_root(), name), storage.read_bytes(url))
    return model_id


@pytest.fixture
def untrained(tiny_dataset) -> str:
    """A freshly initialised generator (pix2pix init: its ab are near 0, a gray photo)."""
    model_id = versions.new_model_id("untrained")
    versions.save_version(build_generator(TINY_GENERATOR, seed=7), {
        "stage": "pretrain", "generator": TINY_GENERATOR.to_dict(), "image_size": 32,
        "dataset": tiny_dataset}, model_id=model_id)
    return model_id


def _independent(model_id: str, dataset: str) -> dict[str, float]:
    return evaluate_model(model_id, dataset=dataset, config=EvalConfig(
        device="cpu", compare=False, write_images=False, update_card=False))["metrics"]


def test_gate_refuses_a_worse_challenger_and_records_why(trained, untrained, tiny_dataset):
    first = decide(trained, dataset=tiny_dataset, config=CPU)
    assert first["promoted"] and first["reason"] == "first model"
    assert versions.champion() == trained

    refused = decide(untrained, config=CPU)  # the snapshot: the one it was trained on
    assert refused["promoted"] is False and refused["forced"] is False
    assert versions.champion() == trained and refused["model_id"] == trained
    assert refused["champion"] == trained and refused["challenger"] == untrained
    assert refused["dataset"] == tiny_dataset
    assert refused["dataset_manifest_sha256"] == manifest_digest(tiny_dataset)
    assert refused["dataset_snapshot"] == versions.read_card(trained)["dataset_snapshot"]
    # Both models' numbers are the evaluation's own, on the same snapshot.
    ours, theirs = refused["metrics"]["challenger"], refused["metrics"]["champion"]
    assert ours == _independent(untrained, tiny_dataset)
    assert theirs == _independent(trained, tiny_dataset)
    assert ours["ciede2000"] > theirs["ciede2000"] + 0.1  # clearly worse, not a tie
    by_metric = {check["metric"]: check for check in refused["checks"]}
    assert by_metric["ciede2000"]["passed"] is False
    assert f"worse than champion {trained}" in refused["reason"]
    assert "ciede2000 <= champion's + 0" in refused["rule"]

    # The refusal is in the pointer's history; the champion's numbers are kept in its card.
    history = versions.history()
    assert [(e["challenger"], e["promoted"], e["model_id"]) for e in history] == [
        (trained, True, trained), (untrained, False, trained)]
    assert history[-1]["metrics"] == refused["metrics"] and history[-1]["decided_at"]
    stored = versions.read_card(trained)["gate_evaluations"]
    assert stored[f"{manifest_digest(tiny_dataset)}/val"]["metrics"] == theirs


def test_gate_promotes_a_better_challenger(trained, untrained, tiny_dataset):
    versions.promote(untrained, reason="set up", forced=True)
    promoted = decide(trained, dataset=tiny_dataset, config=CPU)
    assert promoted["promoted"] is True and versions.champion() == trained
    assert promoted["champion"] == untrained and promoted["model_id"] == trained
    assert all(check["passed"] for check in promoted["checks"])
    assert promoted["reason"].startswith(f"no worse than champion {untrained}")
    pointer = versions.champion_pointer()
    assert pointer is not None and pointer["model_id"] == trained
    assert [e["forced"] for e in pointer["history"]] == [True, False]
    # Deciding again about the champion itself changes nothing.
    again = decide(trained, dataset=tiny_dataset, config=CPU)
    assert again["promoted"] is False and again["reason"] == "already the champion"
    assert len(versions.history()) == 2


def test_numbers_from_another_snapshot_are_not_reused(trained, untrained, tiny_dataset):
    """A champion evaluated on another snapshot is evaluated again on the challenger's."""
    versions.promote(trained, reason="set up")
    # Flattering numbers from elsewhere: reused, they would refuse any challenger.
    versions.update_card(trained, {"metrics": {"ciede2000": 0.0, "colorfulness_gap": 0.0},
                                   "evaluated_on": {"dataset": "elsewhere", "split": "val",
                                                    "dataset_manifest_sha256": "0" * 64}})
    refused = decide(untrained, dataset=tiny_dataset, config=CPU)
    assert refused["metrics"]["champion"] == _independent(trained, tiny_dataset)
    assert versions.read_card(trained)["metrics"]["ciede2000"] == 0.0  # its own evaluation


def test_the_rule_and_its_margins():
    ciede = Criterion("ciede2000", 0.0)
    assert ciede.check({"ciede2000": 5.0}, {"ciede2000": 5.0})["passed"]  # a tie is no worse
    assert not ciede.check({"ciede2000": 5.0001}, {"ciede2000": 5.0})["passed"]
    gap = Criterion("colorfulness_gap", 2.0)
    assert gap.check({"colorfulness_gap": 6.0}, {"colorfulness_gap": 4.0})["passed"]
    assert not gap.check({"colorfulness_gap": 6.01}, {"colorfulness_gap": 4.0})["passed"]
    assert [(c.metric, c.margin) for c in GateConfig().criteria()] == [
        ("ciede2000", GATE_CIEDE2000_MARGIN), ("colorfulness_gap", GATE_COLORFULNESS_GAP_MARGIN)]
    with pytest.raises(ValueError, match="margins must be 0 or more"):
        GateConfig(ciede2000_margin=-0.1)


def test_unknown_challenger_is_named():
    with pytest.raises(FileNotFoundError, match="'nope'"):
        decide("nope")


def test_decision_markdown_shows_both_models(trained, untrained, tiny_dataset):
    decide(trained, dataset=tiny_dataset, config=CPU)
    text = gate.decision_markdown(decide(untrained, config=CPU))
    assert "refused; champion kept" in text and "| ciede2000 |" in text and "| NO |" in text
    assert untrained in text and trained in text

"""prefect.yaml: every deployment points at a real flow with parameters it accepts."""

from __future__ import annotations

import inspect
from pathlib import Path

import yaml
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[2]


def test_deployments_load_their_flows_and_parameters(monkeypatch):
    monkeypatch.chdir(ROOT)
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = {d["name"] for d in config["deployments"]}
    assert {"weekly", "prepare-data", "evaluate"} <= names
    for deployment in config["deployments"]:
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        accepted = inspect.signature(flow.fn).parameters
        assert set(deployment.get("parameters", {})) <= set(accepted), deployment["name"]
        # Training with DDP (issue 7) runs on a pool of GPU workers; the rest anywhere.
        expected = "colorization-gpu" if deployment["name"] == "train-gpu" else "colorization"
        assert deployment["work_pool"]["name"] == expected
    weekly = next(d for d in config["deployments"] if d["name"] == "weekly")
    assert weekly["schedules"][0]["cron"] == "0 3 * * 1"
    assert "schedule" not in weekly  # the deprecated single-schedule key
    # The source is templated from the environment at deploy time, never hard-coded.
    assert weekly["parameters"]["source"] == "{{ $COLORIZATION_SOURCE }}"


def test_colorize_bucket_runs_every_15_minutes_over_templated_prefixes():
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    bucket = next(d for d in config["deployments"] if d["name"] == "colorize-bucket")
    assert bucket["entrypoint"] == "flows/colorize_bucket.py:colorize_bucket"
    assert bucket["schedules"][0]["interval"] == 900
    assert bucket["concurrency_limit"] == 1
    assert bucket["parameters"]["source"] == "{{ $COLORIZATION_INCOMING }}"
    assert bucket["parameters"]["destination"] == "{{ $COLORIZATION_COLORIZED }}"

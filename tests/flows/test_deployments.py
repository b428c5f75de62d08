"""prefect.yaml: every deployment points at a real flow with parameters it accepts."""

from __future__ import annotations

import inspect
import re
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
        # Training (DDP of issue 7, the weekly retrain of issue 9) runs on a pool of GPU
        # workers; the rest anywhere.
        gpu = deployment["name"] in {"train-gpu", "weekly"}
        expected = "colorization-gpu" if gpu else "colorization"
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


# ---- Issue 9: deployable as written, and the local stack serves every pool --------------------
def test_templated_parameters_are_strings_the_flows_accept(monkeypatch):
    """A `{{ $VAR }}` value is a string after templating, set or not: an int or bool parameter
    templated that way makes `prefect deploy` fail with a 422 on the parameter schema."""
    monkeypatch.chdir(ROOT)
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for deployment in config["deployments"]:
        flow = load_flow_from_entrypoint(deployment["entrypoint"])
        accepted = inspect.signature(flow.fn).parameters
        for name, value in deployment.get("parameters", {}).items():
            if isinstance(value, str) and "{{" in value:
                assert "str" in str(accepted[name].annotation), (deployment["name"], name)


def test_the_local_stack_starts_a_worker_for_every_pool_of_the_deployments():
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    pools = {d["work_pool"]["name"] for d in config["deployments"]}
    script = (ROOT / "infra" / "stack.sh").read_text()
    match = re.search(r'COLORIZATION_STACK_POOLS:-([^}]*)}', script)
    assert match is not None and set(match.group(1).split()) == pools == {
        "colorization", "colorization-gpu"}

"""The colorize-bucket flow under a real (temporary) Prefect API: threads and a Dask cluster."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest
from bulk_support import BROKEN, VALID, digests, make_archive
from prefect.client.orchestration import get_client

from colorization import bulk_manifest, storage
from flows.colorize_bucket import colorize_bucket


async def _artifacts(kind: str, flow_run_ids: list) -> list:
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterType,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )

    async with get_client() as client:
        # The run's own artifacts, and those of its subflow (the chunks).
        children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=flow_run_ids)))
        ids = [*flow_run_ids, *(child.id for child in children)]
        return await client.read_artifacts(artifact_filter=ArtifactFilter(
            type=ArtifactFilterType(any_=[kind]), flow_run_id=ArtifactFilterFlowRunId(any_=ids)))


def _check(source: str, out: str, summary: dict, model_id: str) -> None:
    assert summary["model_id"] == model_id
    assert (summary["done"], summary["failed"], summary["skipped"]) == (len(VALID),
                                                                       len(BROKEN), 0)
    records = bulk_manifest.read_records(out)
    assert Counter(r.key for r in records if r.status == "done") == Counter(list(VALID))
    assert {r.key for r in records if r.status == "failed"} == set(BROKEN)
    for key in VALID:
        assert storage.exists(storage.join(out, key)), key


@pytest.mark.parametrize("runner", ["threads", "dask"])
def test_flow_colorizes_a_bucket_in_chunks(runner, prefect_api, tiny_model, s3_bucket,
                                           monkeypatch):
    models_root, model_id = tiny_model
    monkeypatch.setenv("COLORIZATION_HOME", str(Path(models_root).parent))
    source, out = storage.join(s3_bucket, "incoming"), storage.join(s3_bucket, "colorized")
    before = make_archive(source)
    state = colorize_bucket(source, out, model=model_id, runner=runner, workers=2,
                            chunk_size=4, batch_size=2, return_state=True)
    _check(source, out, state.result(), model_id)
    assert digests(source) == before
    run_ids = [state.state_details.flow_run_id]
    (failures,) = asyncio.run(_artifacts("table", run_ids))
    assert failures.key == "colorize-bucket-failures"
    rows = json.loads(failures.data) if isinstance(failures.data, str) else failures.data
    assert {row["key"]: row["when"] for row in rows} == dict.fromkeys(BROKEN, "this run")
    (progress,) = asyncio.run(_artifacts("progress", run_ids))
    assert float(progress.data) == 100.0
    # A rerun finds nothing to do and reports the known bad files.
    again = colorize_bucket(source, out, model=model_id, runner=runner, workers=2,
                            chunk_size=4)
    assert (again["done"], again["skipped"], again["failed_before"]) == (
        0, len(VALID), len(BROKEN))

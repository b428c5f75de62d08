"""The prepare-data flow under a real (temporary) Prefect API: mapped batches and shards,
progress and markdown artifacts, the same snapshot as the library call."""

from __future__ import annotations

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import coco_tree
from prefect.client.orchestration import get_client

from colorization import coco
from colorization.shards import PrepareConfig, prepare_dataset, read_manifest
from flows.prepare_data import prepare_data


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_prepare_data_flow_maps_tasks_and_reports(prefect_api, tmp_path, monkeypatch):
    monkeypatch.setattr(coco, "DOWNLOAD_BACKOFF_S", 0.01)
    root = tmp_path / "coco"
    kinds = coco_tree.build(root, clean=12)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    mirror = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        dataset = prepare_data(source="coco://val2017", coco_mirror=mirror, sample_size=10,
                               image_size=64, shard_size=2)
        library = prepare_dataset(PrepareConfig(source="coco://val2017", coco_mirror=mirror,
                                                sample_size=10, image_size=64, shard_size=2,
                                                output=str(tmp_path / "library")))
    finally:
        server.shutdown()
    manifest, same = read_manifest(dataset), read_manifest(library)
    assert (manifest["counts"]["train"], manifest["counts"]["val"]) == (8, 2)
    assert set(manifest["splits"]["train"]["ids"]) <= set(kinds["clean"])
    assert len(manifest["splits"]["train"]["shards"]) == 4  # ceil(8 / 2), mapped tasks
    for split in ("train", "val"):
        assert manifest["splits"][split] == same["splits"][split]  # flow == library
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    kinds_seen = {a.type for a in artifacts}
    assert {"progress", "markdown"} <= kinds_seen
    report = next(a for a in artifacts if a.key == "dataset-snapshot")
    assert dataset in report.data and "| train | 8 | 4 |" in report.data

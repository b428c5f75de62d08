"""COCO as a source: a COCO-shaped tree served over HTTP on 127.0.0.1, from S3 and a zip."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import coco_tree
import pytest

from colorization import coco, paths, storage
from colorization.cli import main
from colorization.shards import PrepareConfig, prepare_dataset, read_manifest

EXPECTED_REASONS = {"grayscale": "grayscale", "sepia": "single_tint", "truncated": "unreadable",
                    "too_small": "too_small"}


class _LoggedHandler(SimpleHTTPRequestHandler):
    """http.server's own handler, recording each path asked for (and quiet)."""

    requests: list[str]
    fail_first: bool = False

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.requests.append(self.path)
        if self.fail_first and self.requests.count(self.path) == 1:
            self.send_error(503, "try again")  # a flaky mirror: the retry must succeed
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


def _serve(root: Path, *, fail_first: bool = False) -> tuple[ThreadingHTTPServer, list[str]]:
    requests: list[str] = []
    handler = type("Handler", (_LoggedHandler,), {"requests": requests,
                                                  "fail_first": fail_first})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, requests


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:
    root = tmp_path_factory.mktemp("coco")
    return root, coco_tree.build(root)


@pytest.fixture
def mirror(tree) -> Iterator[tuple[str, list[str]]]:
    server, requests = _serve(tree[0])
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coco, "DOWNLOAD_BACKOFF_S", 0.01)


def _images(requests: list[str]) -> list[str]:
    return [r for r in requests if r.startswith("/val2017/")]


def _prepare(mirror_url: str, capsys) -> tuple[str, dict]:
    assert main(["prepare", "coco://val2017", "--coco-mirror", mirror_url,
                 "--sample-size", "100", "--image-size", "64"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    return last, read_manifest(last)


def test_prepare_coco_over_http_exact_curated_reproducible(tree, mirror, capsys, tmp_path,
                                                           monkeypatch):
    _, kinds = tree
    url, requests = mirror
    dataset, manifest = _prepare(url, capsys)
    assert dataset.startswith(paths.datasets_root())
    train, val = manifest["splits"]["train"]["ids"], manifest["splits"]["val"]["ids"]
    assert (len(train), len(val)) == (80, 20) and not set(train) & set(val)
    bad = {name: EXPECTED_REASONS[kind] for kind, names in kinds.items() if kind != "clean"
           for name in names}
    assert not set(bad) & set(train + val)
    assert set(train + val) == set(kinds["clean"])  # 100 clean photos: the walk took them all
    dropped = {d["id"]: d["reason"] for d in manifest["dropped"]}
    assert dropped == bad
    assert manifest["counts"]["considered"] == 107
    assert manifest["coco"]["split"] == "val2017"
    assert manifest["coco"]["annotations"] == f"{url}/annotations/instances_val2017.json"
    image_ids = manifest["coco"]["image_ids"]
    assert image_ids["000000001000.jpg"] == 1000 and len(image_ids) == 107
    assert manifest["coco"]["objects"]["000000001000.jpg"][0]["category"] == "dog"
    assert set(manifest["scores"]) == set(train + val)
    raw = Path(coco.raw_root("val2017"))
    assert sorted(p.name for p in raw.iterdir()) == sorted(set(kinds["clean"]) |
                                                           set(kinds["grayscale"]) |
                                                           set(kinds["sepia"]) |
                                                           set(kinds["too_small"]))
    # Each truncated photo was tried DOWNLOAD_ATTEMPTS times, every other photo once.
    fetched = _images(requests)
    assert len(fetched) == 105 + 2 * coco.DOWNLOAD_ATTEMPTS

    # A rerun in the same home downloads nothing: the snapshot exists.
    requests.clear()
    assert _prepare(url, capsys)[0] == dataset and _images(requests) == []
    # Another snapshot of the same photos in the same home fetches no verified photo again.
    assert main(["prepare", "coco://val2017", "--coco-mirror", url, "--sample-size", "100",
                 "--image-size", "64", "--out", str(tmp_path / "other")]) == 0
    assert sorted(set(_images(requests))) == sorted(f"/val2017/{n}" for n in kinds["truncated"])

    # A fresh home: the same ids in the same order and byte-identical shards.
    monkeypatch.setenv("COLORIZATION_HOME", str(tmp_path / "fresh"))
    again_url, again = _prepare(url, capsys)
    assert again_url.rsplit("/", 1)[-1] == dataset.rsplit("/", 1)[-1]
    for split in ("train", "val"):
        assert again["splits"][split] == manifest["splits"][split]
        for shard in again["splits"][split]["shards"]:
            data = storage.read_bytes(storage.join(again_url, shard["name"]))
            assert hashlib.sha256(data).hexdigest() == shard["sha256"]


def test_flaky_mirror_is_retried_and_size_mismatch_recorded(tmp_path, capsys):
    root = tmp_path / "coco"
    kinds = coco_tree.build(root, clean=6)
    annotations = root / "annotations" / "instances_val2017.json"
    data = json.loads(annotations.read_text())
    data["images"][0]["width"] += 1  # the annotation disagrees with the file
    annotations.write_text(json.dumps(data))
    server, requests = _serve(root, fail_first=True)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        # 5 of the 6 clean photos are left: asking for 6, the walk considers every photo.
        assert main(["prepare", "coco://val2017", "--coco-mirror", url, "--sample-size", "6",
                     "--image-size", "64"]) == 0
    finally:
        server.shutdown()
    manifest = read_manifest(capsys.readouterr().out.strip().splitlines()[-1])
    dropped = {d["id"]: (d["reason"], d["detail"]) for d in manifest["dropped"]}
    first = data["images"][0]["file_name"]
    assert dropped[first][0] == "size_mismatch" and "annotation says" in dropped[first][1]
    raw = Path(coco.raw_root("val2017"))
    assert not (raw / first).exists() and (raw / kinds["clean"][1]).exists()  # never verified
    assert (manifest["counts"]["train"], manifest["counts"]["val"]) == (4, 1)
    kept = manifest["splits"]["train"]["ids"] + manifest["splits"]["val"]["ids"]
    assert set(kept) == set(kinds["clean"]) - {first}
    # Each good photo was asked for twice: a 503 first, then the real answer.
    assert all(requests.count(f"/val2017/{name}") == 2 for name in kept)


def test_prepare_coco_from_an_s3_mirror(s3_bucket, tmp_path):
    root = tmp_path / "coco"
    kinds = coco_tree.build(root, clean=8)
    for path in sorted(root.rglob("*")):
        if path.is_file():
            key = path.relative_to(root).as_posix()
            storage.upload(path, storage.join(s3_bucket, "mirror", key))
    mirror_url = storage.join(s3_bucket, "mirror")
    calls: list[tuple[str, int, int]] = []
    dataset = prepare_dataset(PrepareConfig(source="coco://val2017", coco_mirror=mirror_url,
                                            sample_size=8, image_size=64, val_fraction=0.25),
                              progress=lambda *call: calls.append(call))
    manifest = read_manifest(dataset)
    downloads = [c for c in calls if c[0] == "download"]  # what the CLI's bar is fed
    assert downloads[-1] == ("download", 15, 15) and len(downloads) == 15
    assert calls[-1] == ("shards", 2, 2)
    assert (manifest["counts"]["train"], manifest["counts"]["val"]) == (6, 2)
    kept = set(manifest["splits"]["train"]["ids"] + manifest["splits"]["val"]["ids"])
    assert kept == set(kinds["clean"])
    assert {d["reason"] for d in manifest["dropped"]} <= set(EXPECTED_REASONS.values())
    assert manifest["coco"]["mirror"] == mirror_url


def test_annotations_from_the_published_zip_and_the_mirror_env(tmp_path, monkeypatch):
    tree_root = tmp_path / "tree"
    coco_tree.build(tree_root, clean=3)
    mirror_root = tmp_path / "mirror"
    (mirror_root / "annotations").mkdir(parents=True)
    shutil.copytree(tree_root / "val2017", mirror_root / "val2017")
    with zipfile.ZipFile(mirror_root / "annotations" / "annotations_trainval2017.zip", "w") as z:
        z.write(tree_root / "annotations" / "instances_val2017.json",
                "annotations/instances_val2017.json")
        z.writestr("annotations/captions_val2017.json", "{}")
    monkeypatch.setenv("COLORIZATION_COCO_MIRROR", str(mirror_root))
    assert coco.mirror_url() == str(mirror_root)
    annotations, origin = coco.load_annotations("val2017", mirror=coco.mirror_url())
    assert origin.endswith("annotations_trainval2017.zip#annotations/instances_val2017.json")
    photos = coco.photos(annotations, split="val2017", mirror=coco.mirror_url())
    assert len(photos) == 10
    assert photos[0].url == storage.join(str(mirror_root), "val2017", photos[0].id)
    assert storage.exists(photos[0].url)
    with pytest.raises(ValueError, match="coco://<split>"):
        coco.split_of("coco://")
    with pytest.raises(FileNotFoundError, match="is it a COCO mirror"):
        coco.load_annotations("train2017", mirror=str(tmp_path / "empty"))


def test_a_mirror_that_fails_every_photo_stops_the_run_with_one_line(tmp_path, capsys,
                                                                   monkeypatch):
    from colorization import storage_http

    monkeypatch.setattr(storage_http, "DOWNLOAD_BACKOFF_S", 0.001)
    root = tmp_path / "coco"
    coco_tree.build(root, clean=3)

    class Down(_LoggedHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path.startswith("/val2017/"):
                self.send_error(503, "down for maintenance")
                return
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 partial(type("H", (Down,), {"requests": []}),
                                         directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code = main(["prepare", "coco://val2017", "--coco-mirror",
                     f"http://127.0.0.1:{server.server_address[1]}", "--image-size", "64"])
    finally:
        server.shutdown()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("colorize: error: the COCO mirror failed")
    assert "503" in err[-1] and not (Path(coco.raw_root("val2017"))).exists()

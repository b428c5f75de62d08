"""FiftyOne review of a model: the grouped dataset, a new process, the App, curation export.

FiftyOne tests are few on purpose: its MongoDB start and import cost ~15 s (conftest).
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from support import FIXTURE_PHOTOS

from colorization import curation, storage
from colorization.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reviewed(fiftyone_env, tiny_model, tiny_dataset, tmp_path_factory):
    """A storage root holding a copy of the tiny model, evaluated with `colorize evaluate`
    (which builds its review dataset): (home, model id, evaluate's stdout)."""
    models_root, model_id = tiny_model
    home = tmp_path_factory.mktemp("review-home")
    for url in storage.list_files(storage.join(models_root, model_id)):
        name = storage.relative_key(url, models_root)
        storage.write_bytes(storage.join(str(home / "models"), name), storage.read_bytes(url))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLORIZATION_HOME", str(home))
        patch.setenv("XDG_CACHE_HOME", str(home / "cache"))
        done = subprocess.run([sys.executable, "-m", "colorization.cli", "evaluate", model_id,
                               "--dataset", tiny_dataset, "--batch-size", "3"],
                              capture_output=True, text=True, timeout=300, cwd=REPO,
                              env=_env())
    assert done.returncode == 0, done.stderr
    return home, model_id, done.stdout


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_evaluate_builds_a_grouped_dataset_a_new_process_can_load(reviewed, monkeypatch):
    home, model_id, out = reviewed
    monkeypatch.setenv("COLORIZATION_HOME", str(home))
    name = f"colorization-{model_id}"
    assert f"review dataset: {name}" in out
    import fiftyone as fo

    dataset = fo.load_dataset(name)  # built by another process
    assert dataset.persistent and dataset.media_type == "group"
    assert sorted(dataset.group_slices) == ["colorized", "grayscale", "original"]
    assert dataset.default_group_slice == "colorized"
    assert len(dataset) == 8  # one group per validation photo
    assert len(dataset.distinct("group.id")) == 8
    assert isinstance(dataset.get_field("ciede2000"), fo.FloatField)
    colorized = dataset.select_group_slices("colorized")
    values = colorized.values("ciede2000")
    assert len(values) == 8 and all(isinstance(v, float) for v in values)
    # Every slice's file exists and is the photo of its group.
    for sample in dataset.select_group_slices():
        assert Path(sample.filepath).is_file()
        assert sample.group.name in Path(sample.filepath).parts
    # `worst`: the worst tenth by CIEDE2000, at least one.
    worst = colorized.match_tags("worst")
    assert len(worst) == math.ceil(0.1 * 8) and max(worst.values("ciede2000")) == max(values)
    assert not dataset.select_group_slices("original").match_tags("worst")

    done = subprocess.run([sys.executable, "-m", "colorization.cli", "review", model_id,
                           "--no-app"], capture_output=True, text=True, timeout=300,
                          cwd=REPO, env=_env())
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    summary = json.loads(lines[0])
    assert summary["name"] == name and summary["groups"] == 8 and summary["samples"] == 24
    assert summary["slices"] == ["colorized", "grayscale", "original"]
    assert summary["worst"] == worst.values("photo_id")


def test_exclude_tags_export_to_the_list_and_survive_a_rebuild(reviewed, monkeypatch, capsys):
    home, model_id, _ = reviewed
    monkeypatch.setenv("COLORIZATION_HOME", str(home))
    import fiftyone as fo

    from colorization import review

    name = f"colorization-{model_id}"
    dataset = fo.load_dataset(name)
    tagged = dataset.select_group_slices("colorized").limit(2)
    photos = sorted(tagged.values("photo_id"))
    tagged.tag_samples("exclude")
    storage.write_text(curation.exclusion_list_url(), "earlier.jpg\n")

    assert main(["curate", "export", model_id]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == curation.exclusion_list_url()
    assert "exported 2 photo ids" in captured.err
    assert curation.read_exclusions() == {"earlier.jpg", *photos}  # merged, not replaced

    review.build_model_dataset(model_id)  # a rebuild keeps the reviewers' tags
    assert review.summary(name)["exclude"] == photos
    # No argument: every review dataset of this storage root.
    other = home / "other.txt"
    assert main(["curate", "export", "--to", str(other)]) == 0
    assert curation.read_exclusions(str(other)) == set(photos)

    # The loop closes: the next prepare of the same photos leaves them out, recorded.
    capsys.readouterr()
    assert main(["prepare", str(FIXTURE_PHOTOS), "--image-size", "16"]) == 0
    snapshot = capsys.readouterr().out.strip().splitlines()[-1]
    manifest = storage.read_json(storage.join(snapshot, "manifest.json"))
    kept = {photo for split in manifest["splits"].values() for photo in split["ids"]}
    assert not kept & set(photos) and len(kept) == 40 - 2
    excluded = {d["id"] for d in manifest["dropped"] if d["reason"] == "excluded"}
    assert excluded == set(photos)


def test_review_without_a_dataset_is_one_clear_line(reviewed, monkeypatch, capsys):
    home, model_id, _ = reviewed
    monkeypatch.setenv("COLORIZATION_HOME", str(home))
    assert main(["curate", "export", "--dataset", str(home / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(processes: list[psutil.Process], port: int) -> list:
    """Addresses the processes listen on at `port` (a child that just exited is skipped)."""
    found = []
    for process in processes:
        try:
            found += [conn.laddr for conn in process.net_connections()
                      if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port]
        except psutil.Error:
            continue
    assert found, f"nothing listens on {port}"
    return found


def test_the_app_answers_on_loopback_and_leaves_no_process(reviewed, monkeypatch):
    home, model_id, _ = reviewed
    monkeypatch.setenv("COLORIZATION_HOME", str(home))
    port = _free_port()
    # SIGINT ignored in the child, as in a shell's background job (`cmd &`): the App must
    # still stop on it, so it installs its own handler.
    app = subprocess.Popen([sys.executable, "-m", "colorization.cli", "review", model_id,
                            "--port", str(port)], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, cwd=REPO, env=_env(),
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    children: list[psutil.Process] = []
    url = ""
    try:
        status, deadline = None, time.monotonic() + 90
        # The URL is printed once the session is up; Ctrl-C before that is an interrupted
        # start (exit 130), so wait for it before probing the server.
        assert app.stdout is not None
        if select.select([app.stdout], [], [], 90)[0]:
            url = app.stdout.readline().strip()
        while time.monotonic() < deadline and app.poll() is None:
            children = psutil.Process(app.pid).children(recursive=True) or children
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
                    status = answer.status
                break
            except OSError:
                time.sleep(1)
        assert status == 200
        children = psutil.Process(app.pid).children(recursive=True)
        assert all(addr.ip == "127.0.0.1" for addr in _listening(children, port))
    finally:
        app.send_signal(signal.SIGINT)
        try:
            app.wait(60)
        finally:
            if app.poll() is None:
                app.kill()
    assert app.returncode == 0
    assert url == f"http://127.0.0.1:{port}/"
    _, alive = psutil.wait_procs(children, timeout=30)
    for process in alive:
        process.kill()
    assert not alive, f"left running: {[p.cmdline() for p in alive]}"


def test_worst_tenth_and_suspect_truth_rules():
    from colorization.review import suspect_truth, worst_ids

    per_photo = {f"p{i}.jpg": {"ciede2000": float(i)} for i in range(25)}
    assert worst_ids(per_photo) == ["p24.jpg", "p23.jpg", "p22.jpg"]  # ceil(10% of 25)
    assert worst_ids({"a.jpg": {"ciede2000": 1.0}}) == ["a.jpg"]  # at least one
    colourful = {"truth_chroma": 20.0, "truth_hue_spread": 40.0}
    assert not suspect_truth(colourful)
    assert suspect_truth({**colourful, "truth_chroma": 4.0})  # nearly gray
    assert suspect_truth({**colourful, "truth_hue_spread": 1.0})  # one tint (sepia), degrees


def test_images_in_s3_are_copied_once_into_the_local_cache(s3_bucket, tmp_path, monkeypatch):
    from colorization.review import local_media

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    prefix = storage.join(s3_bucket, "models/m1/evaluation/val")
    storage.write_bytes(storage.join(prefix, "colorized/a.png"), b"png-a")
    storage.write_bytes(storage.join(prefix, "original/sub/b.png"), b"png-bb")
    root = Path(local_media(prefix))
    assert root.is_relative_to(tmp_path / "cache" / "colorization" / "review")
    assert (root / "colorized/a.png").read_bytes() == b"png-a"
    assert (root / "original/sub/b.png").read_bytes() == b"png-bb"
    stamp = (root / "original/sub/b.png").stat().st_mtime_ns
    storage.write_bytes(storage.join(prefix, "colorized/a.png"), b"png-a2")  # changed size
    assert Path(local_media(prefix)) == root
    assert (root / "colorized/a.png").read_bytes() == b"png-a2"
    assert (root / "original/sub/b.png").stat().st_mtime_ns == stamp  # unchanged: not fetched
    # A local folder is used in place.
    assert local_media(str(tmp_path)) == str(tmp_path)

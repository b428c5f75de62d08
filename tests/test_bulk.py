"""`colorize bucket` over a folder and over S3: every valid file once, every failure recorded."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from bulk_support import (
    BROKEN,
    GREY_LOSSLESS,
    IGNORED,
    VALID,
    alpha_ramp,
    digests,
    gray_photo,
    make_archive,
)
from PIL import Image
from skimage.color import rgb2lab

from colorization import bulk_manifest, storage
from colorization.bulk import BulkConfig, colorize_bucket, plan_bucket
from colorization.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_home(tiny_model, monkeypatch) -> str:
    """COLORIZATION_HOME holding the tiny model; returns its id."""
    models_root, model_id = tiny_model
    monkeypatch.setenv("COLORIZATION_HOME", str(Path(models_root).parent))
    return model_id


def _check_outputs(source: str, out: str, model_id: str) -> None:
    gray_l = rgb2lab(np.asarray(gray_photo().convert("RGB"), float) / 255)[..., 0]
    records = bulk_manifest.read_records(out)
    done = Counter(r.key for r in records if r.status == "done")
    assert done == Counter(list(VALID)), "one done record per valid input"
    failed = {r.key: r for r in records if r.status == "failed"}
    assert set(failed) == set(BROKEN)
    for key, phrase in BROKEN.items():
        assert phrase in failed[key].error, (key, failed[key].error)
        assert failed[key].bad_input
    assert {r.model for r in records} == {model_id}
    for key, (size, has_alpha) in VALID.items():
        with Image.open(io.BytesIO(storage.read_bytes(storage.join(out, key)))) as img:
            assert img.size == size, key
            assert ("A" in img.getbands()) == has_alpha, key
            if has_alpha:  # kept exactly
                np.testing.assert_array_equal(np.asarray(img.getchannel("A")), alpha_ramp())
            if key in GREY_LOSSLESS:  # 8 and 16 bit: L* is the input's own (scikit-image)
                out_l = rgb2lab(np.asarray(img.convert("RGB"), float) / 255)[..., 0]
                assert np.abs(out_l - gray_l).mean() < 0.5, key
    outputs = {storage.relative_key(u, out) for u in storage.list_files(out)}
    assert {k for k in outputs if not k.startswith("_manifest/")} == set(VALID)


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_bucket_over_an_archive_of_awkward_files(where, tiny_home, tmp_path, request, capsys):
    base = request.getfixturevalue("s3_bucket") if where == "s3" else str(tmp_path)
    source, out = storage.join(base, "incoming"), storage.join(base, "colorized")
    before = make_archive(source)

    code = main(["bucket", source, out, "--model", tiny_home, "--batch-size", "3"])
    captured = capsys.readouterr()
    assert code == 1  # some inputs failed: a script must see it
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    assert f"done {len(VALID)} " in captured.out and f"failed {len(BROKEN)}," in captured.out
    assert f"ignored {len(IGNORED)}" in captured.out
    for key in BROKEN:
        assert f"failed: {key}: " in captured.err
    _check_outputs(source, out, tiny_home)
    assert digests(source) == before  # inputs byte-identical, nothing added or removed

    # A rerun does no work: no output rewritten, no record added; the bad files still count.
    records = len(bulk_manifest.read_records(out))
    stamps = {u: storage.stat(u).version for u in storage.list_files(out)}
    assert main(["bucket", source, out, "--model", tiny_home]) == 1
    assert f"done 0 (0.0 images/s), skipped {len(VALID)}" in capsys.readouterr().out
    assert len(bulk_manifest.read_records(out)) == records
    assert {u: storage.stat(u).version for u in storage.list_files(out)} == stamps


def test_a_changed_or_new_input_is_redone_and_others_are_not(tiny_home, tmp_path):
    source, out = tmp_path / "in", str(tmp_path / "out")
    make_archive(str(source))
    first = colorize_bucket(str(source), out, model=tiny_home)
    assert first.done == len(VALID) and not first.ok
    (source / "good one.jpg").write_bytes((source / "cmyk.jpg").read_bytes())  # new version
    (source / "added.png").write_bytes((source / "la.png").read_bytes())
    second = colorize_bucket(str(source), out, model=tiny_home)
    assert second.done == 2 and second.skipped == len(VALID) - 1
    assert set(second.failed_before) == set(BROKEN) and not second.failed
    retried = plan_bucket(str(source), out, model=tiny_home,
                          config=BulkConfig(retry_failed=True))
    assert sorted(item.key for item in retried.todo) == sorted(BROKEN)


def test_a_failed_write_is_a_record_and_retried_next_time(tiny_home, tmp_path, monkeypatch):
    source, out = tmp_path / "in", str(tmp_path / "out")
    make_archive(str(source))
    real_write = storage.write_bytes

    def flaky(url: str, data: bytes) -> None:
        if url.endswith("rgba.png"):
            raise PermissionError(13, "Permission denied", url)
        real_write(url, data)

    monkeypatch.setattr(storage, "write_bytes", flaky)
    report = colorize_bucket(str(source), out, model=tiny_home)
    assert report.done == len(VALID) - 1
    assert "cannot write" in report.failed["rgba.png"]
    monkeypatch.setattr(storage, "write_bytes", real_write)
    again = colorize_bucket(str(source), out, model=tiny_home)
    assert again.done == 1 and "rgba.png" not in again.failed_before


def test_output_inside_the_input_prefix_is_not_read_back(tiny_home, tmp_path):
    source = tmp_path / "archive"
    make_archive(str(source))
    report = colorize_bucket(str(source), str(source / "colorized"), model=tiny_home)
    assert report.done == len(VALID)
    again = colorize_bucket(str(source), str(source / "colorized"), model=tiny_home)
    assert again.done == 0 and again.skipped == len(VALID)


def test_output_over_the_input_and_a_missing_input_are_one_line_errors(tiny_home, tmp_path,
                                                                       capsys):
    source = tmp_path / "archive"
    make_archive(str(source))
    before = digests(str(source))
    assert main(["bucket", str(source), str(source) + "/", "--model", tiny_home]) == 2
    assert capsys.readouterr().err.strip() == (
        f"colorize: error: {source}/: the output prefix must differ from the input prefix "
        "(inputs are never overwritten)")
    assert digests(str(source)) == before
    assert main(["bucket", str(tmp_path / "nowhere"), str(tmp_path / "out"),
                 "--model", tiny_home]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"colorize: error: {tmp_path / 'nowhere'}: No such folder", err


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_sigkill_mid_run_then_rerun_leaves_one_output_and_record_each(where, tiny_home, tmp_path,
                                                                     request):
    base = request.getfixturevalue("s3_bucket") if where == "s3" else str(tmp_path)
    source, out = storage.join(base, "in"), storage.join(base, "out")
    photos = sorted((ROOT / "tests" / "fixtures" / "photos").glob("*.jpg"))
    names = [f"photo {index:03d}.png" for index in range(60)]
    for index, name in enumerate(names):  # enough work that the kill lands mid-run
        with Image.open(photos[index % len(photos)]) as img:
            buffer = io.BytesIO()
            img.convert("L").resize((384, 256)).save(buffer, format="PNG")
        storage.write_bytes(storage.join(source, name), buffer.getvalue())
    # As a user runs it: the environment (S3 endpoint, storage root) is inherited.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    command = [sys.executable, "-m", "colorization.cli", "bucket", source, out,
               "--model", tiny_home, "--batch-size", "2", "--workers", "1"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if len(bulk_manifest.read_records(out)) >= 3:
                break
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    killed_at = len(bulk_manifest.read_records(out))
    assert 3 <= killed_at < 60

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    records = bulk_manifest.read_records(out)
    assert Counter(r.key for r in records if r.status == "done") == Counter(names)
    assert len(records) == 60  # the rerun recorded only what the killed run had not
    outputs = [storage.relative_key(url, out) for url in storage.list_files(out)]
    assert sorted(k for k in outputs if not k.startswith("_manifest/")) == names
    if where == "folder":  # no half-written file left (an S3 PUT is atomic)
        assert not [p for p in Path(out).rglob("*") if p.name.endswith(".tmp")]

"""infra/stack.sh end to end: a Prefect server, two process workers and moto's S3 on loopback;
the repository's deployments run through the workers against the stack's buckets; `down`
leaves nothing behind. The issue's "Done when" commands, run as an operator types them."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import psutil
import pytest
from PIL import Image
from support import FIXTURE_PHOTOS

from colorization import storage, versions

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "infra" / "stack.sh"
PARTS = ("s3", "server", "worker-colorization", "worker-colorization-gpu")
# Variables a developer's shell may carry that must not leak into the stack under test.
FOREIGN_PREFIXES = ("COLORIZATION_", "AWS_", "PREFECT_", "FIFTYONE_")

pytestmark = pytest.mark.stack


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    state: Path
    env_file: Path
    base_env: dict[str, str]

    def script(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(STACK), command], env=self.base_env, cwd=ROOT,
                              capture_output=True, text=True, timeout=300)

    def stack_env(self) -> dict[str, str]:
        """The variables of stack.env, as `set -a; . infra/stack.env` exports them."""
        lines = self.env_file.read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """A command run from the repository root with stack.env sourced."""
        result = subprocess.run(args, env={**self.base_env, **self.stack_env()}, cwd=ROOT,
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result

    def pids(self) -> dict[str, int]:
        return {part: int((self.state / "pids" / f"{part}.pid").read_text()) for part in PARTS}


def _stack_environment(base: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_PREFIXES)}
    env.update({
        "COLORIZATION_STACK_PYTHON": sys.executable,  # this venv: its prefect and moto
        "COLORIZATION_STACK_DIR": str(base / "state"),
        "COLORIZATION_STACK_ENV_FILE": str(base / "stack.env"),
        "COLORIZATION_STACK_PREFECT_PORT": str(_free_port()),
        "COLORIZATION_STACK_S3_PORT": str(_free_port()),
        # The workers import this checkout, and keep runs and caches in the tmp dir.
        "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "HOME": str(base / "home"),
        "XDG_CACHE_HOME": str(base / "cache"),
        # Test only: no scheduled runs (colorize-bucket's 15-minute interval would start one
        # at once and queue ahead of ours under its concurrency limit of 1).
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    })
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("stack")
    stack = Stack(state=base / "state", env_file=base / "stack.env",
                  base_env=_stack_environment(base))
    try:
        yield stack
    finally:
        stack.script("down")


def _group_processes(groups: set[int]) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) in groups:
                found.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def _processes_of_state(state: Path) -> list[psutil.Process]:
    """Processes whose environment points into the stack's state dir (all its parts and
    anything they started, even in a session of its own, e.g. FiftyOne's MongoDB)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if any(str(state) in value for value in proc.environ().values()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _keys(client, bucket: str, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_stack_runs_the_deployments_through_its_workers_and_leaves_nothing(
        stack: Stack, monkeypatch: pytest.MonkeyPatch):
    up = stack.script("up")
    assert up.returncode == 0, up.stdout + up.stderr
    pids = stack.pids()
    for part in PARTS:
        assert f"{part}: started (pid {pids[part]})" in up.stdout
    env = stack.stack_env()
    assert env["COLORIZATION_HOME"] == "s3://colorization"
    assert env["PREFECT_API_URL"].startswith("http://127.0.0.1:")
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"} <= set(env)
    # Every socket any part listens on is bound to loopback.
    listening = [conn.laddr for proc in _group_processes(set(pids.values()))
                 for conn in proc.net_connections(kind="inet")
                 if conn.status == psutil.CONN_LISTEN]
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening

    # A second `up` finds everything running and starts nothing.
    again = stack.script("up")
    assert again.returncode == 0 and stack.pids() == pids
    assert all(f"{part}: already running" in again.stdout for part in PARTS)
    status = stack.script("status")
    assert status.returncode == 0 and status.stdout.count(": running (pid") == len(PARTS)

    # The operator's commands, with stack.env sourced.
    stack.cli(sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    storage.reset_clients()
    s3 = boto3.client("s3")
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} >= {"colorization", "archive"}
    photos = sorted(FIXTURE_PHOTOS.glob("*.jpg"))
    for photo in photos:
        s3.upload_file(str(photo), "archive", f"photos/{photo.name}")

    def retrain(gan_epochs: int) -> None:
        run = stack.cli(sys.executable, "-m", "prefect", "deployment", "run", "retrain/weekly",
                        "--param", "source=s3://archive/photos", "--param", "image_size=64",
                        "--param", "pretrain_epochs=1", "--param", f"gan_epochs={gan_epochs}",
                        "--watch")
        assert "Flow run finished successfully in 'Completed'" in run.stdout
        assert "stack-colorization-gpu" in run.stdout  # the GPU pool's worker ran it

    retrain(gan_epochs=1)
    first = versions.champion()
    assert first is not None
    assert storage.exists(f"s3://colorization/models/{first}/generator.pt")
    card = versions.read_card(first)
    assert card["dataset"].startswith("s3://colorization/datasets/")
    assert card["metrics"]["images"] == 8  # the fixtures' validation split
    assert 0 < card["metrics"]["ciede2000"] < 100 and card["stage"] == "gan"

    retrain(gan_epochs=0)
    evaluated = [c for c in versions.list_versions() if c["metrics"]]
    assert [c["model_id"] for c in evaluated][0] == first and len(evaluated) == 2
    second = evaluated[1]
    assert second["dataset"] == card["dataset"]  # the same snapshot, found again
    assert second["metrics"]["images"] == 8
    # The gate's decision about the second model, with both models' numbers.
    history = storage.read_json("s3://colorization/models/champion")["history"]
    decision = history[-1]
    assert len(history) == 2 and history[0]["challenger"] == first
    assert decision["challenger"] == second["model_id"] and decision["champion"] == first
    assert decision["forced"] is False and decision["dataset"] == card["dataset"]
    for side in ("challenger", "champion"):  # both models' numbers
        assert {"ciede2000", "colorfulness_gap"} <= set(decision["metrics"][side])
    assert versions.champion() == (second["model_id"] if decision["promoted"] else first)
    # The operator's view of the versions, through the CLI with stack.env sourced.
    listing = stack.cli(sys.executable, "-m", "colorization.cli", "models", "list").stdout
    assert f"* {versions.champion()}" in listing and second["model_id"] in listing

    incoming = photos[:3]
    for photo in incoming:
        s3.upload_file(str(photo), "archive", f"incoming/{photo.name}")
    run = stack.cli(sys.executable, "-m", "prefect", "deployment", "run",
                    "colorize-bucket/colorize-bucket", "--param", "source=s3://archive/incoming",
                    "--param", "destination=s3://archive/colorized", "--watch")
    assert "Flow run finished successfully in 'Completed'" in run.stdout
    outputs = {key for key in _keys(s3, "archive", "colorized/") if "/_manifest/" not in key}
    assert outputs == {f"colorized/{photo.name}" for photo in incoming}
    for photo in incoming:
        body = s3.get_object(Bucket="archive", Key=f"colorized/{photo.name}")["Body"].read()
        with Image.open(io.BytesIO(body)) as out, Image.open(photo) as src:
            assert out.size == src.size and out.mode == "RGB"
    assert _keys(s3, "archive", "incoming/") == [f"incoming/{p.name}" for p in incoming]
    storage.reset_clients()

    down = stack.script("down")
    assert down.returncode == 0, down.stdout + down.stderr
    for part in PARTS:
        assert f"{part}: stopped (pid {pids[part]})" in down.stdout
    assert not any(psutil.pid_exists(pid) for pid in pids.values())
    assert _group_processes(set(pids.values())) == []
    assert _processes_of_state(stack.state) == []
    assert not list((stack.state / "pids").iterdir())
    stopped = stack.script("status")
    assert stopped.returncode == 3 and stopped.stdout.count(": stopped") == len(PARTS)


def test_up_refuses_a_taken_port_and_starts_nothing(tmp_path: Path):
    stack = Stack(state=tmp_path / "state", env_file=tmp_path / "stack.env",
                  base_env=_stack_environment(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stack.base_env["COLORIZATION_STACK_S3_PORT"] = str(port)
        result = stack.script("up")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"stack: S3 server: port 127.0.0.1:{port} is taken by another "
        "program; choose another with COLORIZATION_STACK_S3_PORT")
    assert not (stack.state / "pids").exists() and not stack.env_file.exists()


def test_up_names_a_missing_python(tmp_path: Path):
    env = {**_stack_environment(tmp_path), "COLORIZATION_STACK_PYTHON": str(tmp_path / "nope")}
    result = subprocess.run([str(STACK), "up"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1 and str(tmp_path / "nope") in result.stderr
    assert "COLORIZATION_STACK_PYTHON" in result.stderr


def test_down_never_stops_a_process_that_reuses_a_recorded_pid(tmp_path: Path):
    """A pid file left by a stack that died (a reboot, say) may name an unrelated process by
    now: `status` and `down` recognise it by its start time and leave it alone."""
    stack = Stack(state=tmp_path / "state", env_file=tmp_path / "stack.env",
                  base_env=_stack_environment(tmp_path))
    stranger = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        pids = stack.state / "pids"
        pids.mkdir(parents=True)
        (pids / "s3.pid").write_text(f"{stranger.pid}\n")
        (pids / "s3.start").write_text("Thu Jan  1 00:00:00 1970\n")
        status = stack.script("status")
        assert status.returncode == 3 and "s3: stopped" in status.stdout
        down = stack.script("down")
        assert down.returncode == 0
        assert f"s3: not running (stale pid {stranger.pid})" in down.stdout
        assert stranger.poll() is None  # still running
        assert not (pids / "s3.pid").exists()
    finally:
        stranger.kill()
        stranger.wait()

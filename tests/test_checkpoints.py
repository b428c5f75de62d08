"""Exact resume across a real SIGKILL: `colorize train` killed after its first checkpoint and
started again with the same command ends with the weights of a run never interrupted."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from support import TINY_GENERATOR

from colorization.constants import WEIGHTS_NAME

ROOT = Path(__file__).resolve().parents[1]
# Runs the CLI with checkpoints.save patched to announce its first checkpoint and then
# hang, so the test can SIGKILL the process at a known point (after the file is in place).
PAUSING_CLI = """
import sys, time, pathlib
from colorization import checkpoints, cli
original, marker = checkpoints.save, pathlib.Path(sys.argv[1])
def save(*args, **kwargs):
    path = original(*args, **kwargs)
    if not marker.exists():
        marker.write_text(str(path))
        time.sleep(600)
    return path
checkpoints.save = save
sys.exit(cli.main(sys.argv[2:]))
"""


def run_cli(args: list[str], home: Path, *, pause_marker: Path | None = None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")]), "COLORIZATION_HOME": str(home), "OMP_NUM_THREADS": "1"}
    if pause_marker is None:
        return subprocess.run([sys.executable, "-m", "colorization.cli", *args], env=env,
                              capture_output=True, text=True, timeout=600)
    return subprocess.Popen([sys.executable, "-c", PAUSING_CLI, str(pause_marker), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def final_weights(home: Path) -> dict[str, torch.Tensor]:
    [path] = (home / "models").glob(f"*/{WEIGHTS_NAME}")
    return torch.load(io.BytesIO(path.read_bytes()), weights_only=True)


@pytest.mark.parametrize("stage", ["pretrain", "gan"])
def test_sigkilled_run_resumes_to_identical_weights(stage, tiny_dataset, tmp_path):
    args = ["train", tiny_dataset, "--stage", stage, "--epochs", "3", "--checkpoint-every",
            "2", "--batch-size", "8", "--device", "cpu", "--generator", TINY_GENERATOR.name,
            "--options", '{"num_downs": 4, "base_channels": 8}']
    reference = run_cli(args, tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr

    marker = tmp_path / "first-checkpoint"
    process = run_cli(args, tmp_path / "killed", pause_marker=marker)
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert "step-00000002.pt" in marker.read_text()
    assert not list((tmp_path / "killed").glob("models/*/" + WEIGHTS_NAME))

    resumed = run_cli(args, tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "step-00000002.pt" in resumed.stderr
    ours, theirs = final_weights(tmp_path / "killed"), final_weights(tmp_path / "reference")
    assert ours.keys() == theirs.keys()
    assert max((ours[k].double() - theirs[k].double()).abs().max().item() for k in ours) == 0

"""DDP on the CPU (gloo): ranks stay identical, only rank 0 writes, the CLI runs torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp
from support import TINY_GENERATOR

from colorization import train, versions
from colorization.distributed import torchrun_command
from colorization.models import ModelSpec

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank(rank: int, world: int, port: int, dataset: str, home: str, out: str) -> None:
    """One DDP rank: train the gan stage, then save what this rank holds for the test."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank), COLORIZATION_HOME=home,
                      OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    original = train._finish

    def keep_rank_state(config, loop, *args):
        torch.save({"generator": loop.trainer.generator.state_dict(),
                    "discriminator": loop.trainer.discriminator.state_dict(),
                    "steps": loop.steps}, f"{out}/rank{rank}.pt")
        return original(config, loop, *args)

    train._finish = keep_rank_state
    config = train.TrainConfig(stage="gan", generator=TINY_GENERATOR, epochs=1, batch_size=4,
                               device="cpu", checkpoint_every=3,
                               discriminator=ModelSpec("patchgan", {"base_channels": 8}))
    result = train.train_stage(config, dataset=dataset)
    Path(f"{out}/result{rank}.json").write_text(json.dumps(result))
    torch.distributed.destroy_process_group()


def test_ddp_ranks_hold_identical_weights_and_only_rank_0_writes(tiny_dataset, tmp_path):
    home, out = tmp_path / "home", tmp_path / "out"
    out.mkdir()
    mp.spawn(_rank, args=(2, _free_port(), tiny_dataset, str(home), str(out)), nprocs=2)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    # 32 train photos in 3 near-equal shards (10, 11, 11) split 21 / 11 between the ranks:
    # batch 4 gives 5 and 2 batches; all ranks stop together after 2 steps instead of
    # hanging in an all-reduce.
    assert ranks[0]["steps"] == ranks[1]["steps"] == 2
    for net in ("generator", "discriminator"):
        for name, value in ranks[0][net].items():
            assert torch.equal(value, ranks[1][net][name]), (net, name)
    results = [json.loads((out / f"result{r}.json").read_text()) for r in (0, 1)]
    assert results[0] == results[1] and results[0]["world_size"] == 2
    assert [card["model_id"] for card in versions.list_versions(
        models_root=str(home / "models"))] == [results[0]["model_id"]]
    # The weights saved by rank 0 are the weights both ranks hold.
    model, card = versions.load_generator(results[0]["model_id"],
                                          models_root=str(home / "models"))
    for name, value in model.state_dict().items():
        assert torch.equal(value, ranks[1]["generator"][name]), name
    assert card["training"]["world_size"] == 2


def test_cli_nproc_2_runs_under_torchrun(tiny_dataset, tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "COLORIZATION_HOME": str(home), "PYTHONPATH": os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "colorization.cli", "train", tiny_dataset, "--stage",
         "pretrain", "--epochs", "1", "--nproc", "2", "--device", "cpu", "--batch-size", "4",
         "--generator", "unet", "--options", '{"num_downs": 4, "base_channels": 8}'],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)  # printed once, by rank 0
    card = versions.read_card(result["model_id"], models_root=str(home / "models"))
    assert card["training"]["world_size"] == 2 and result["steps"] == 2
    assert torchrun_command(2, "m", ["a"])[1:5] == ["-m", "torch.distributed.run",
                                                    "--standalone", "--nproc-per-node=2"]

"""DDP plumbing: the process group from torchrun's environment, rank-aware helpers, the launcher.

`colorize train ... --nproc N` re-runs its own command under `torchrun` (N processes on this
machine); each process finds RANK / WORLD_SIZE / LOCAL_RANK in its environment and joins a
process group: NCCL on GPUs, gloo on CPUs. Only rank 0 writes checkpoints, versions and
artifacts. Without those variables everything here is a no-op for one process.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands among the ranks of a run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device_name: str) -> DistContext:
    """Join the process group torchrun describes (once); a single-process context otherwise."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(),
                           int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistContext()
    use_nccl = device_name != "cpu" and torch.cuda.is_available()
    dist.init_process_group("nccl" if use_nccl else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_nccl:
        torch.cuda.set_device(local_rank)
    logger.info("rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(),
                dist.get_backend())
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank)


def all_ranks(flag: bool, ctx: DistContext, device: torch.device) -> bool:
    """Whether `flag` holds on every rank: ranks whose shards hold fewer batches stop all
    ranks together, instead of leaving the others waiting in an all-reduce forever."""
    if not ctx.enabled:
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())


def gather(obj: Any, ctx: DistContext) -> list[Any]:
    """`obj` of every rank, in rank order (e.g. RNG states for a checkpoint)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's `obj` on every rank (e.g. the new model id)."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sync_buffers(module: torch.nn.Module, ctx: DistContext) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank.

    DDP broadcasts them from rank 0 before each forward, so rank 0's are the ones training
    uses; each rank's last forward leaves its own, and this makes the saved state agree.
    """
    if ctx.enabled:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def torchrun_command(nproc: int, module: str, argv: list[str]) -> list[str]:
    """`python -m torch.distributed.run` for `nproc` local processes of `python -m module`."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", module, *argv]


def launch(nproc: int, module: str, argv: list[str]) -> int:
    """Run `module argv` in `nproc` processes under torchrun; returns its exit status."""
    command = torchrun_command(nproc, module, argv)
    logger.info("launching: %s", " ".join(command))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get(
        "OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))}
    return subprocess.run(command, env=env, check=False).returncode

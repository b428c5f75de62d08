"""Training under torchrun: `train_stage_ddp` launches it, `main` is what each process runs.

`python -m colorization.torchrun REQUEST.json`: the request (written by `train_stage_ddp`)
holds the stage's config, dataset, parent model, run name and where rank 0 writes the
result; every rank trains, rank 0 writes.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch.distributed as dist

from colorization import distributed, storage
from colorization.train import TrainConfig, train_stage


def train_stage_ddp(
    config: TrainConfig,
    *,
    nproc: int,
    dataset: str,
    init_from: str | None = None,
    run_name: str | None = None,
    models_root: str | None = None,
) -> dict[str, Any]:
    """`train_stage` in `nproc` processes under torchrun (DDP); one process runs in place.

    Each process trains on its own shards; rank 0 writes and reports the result.
    """
    if nproc <= 1:
        return train_stage(config, dataset=dataset, init_from=init_from, run_name=run_name,
                           models_root=models_root)
    with tempfile.TemporaryDirectory(prefix="colorize-ddp-") as folder:
        request, result_path = Path(folder) / "request.json", Path(folder) / "result.json"
        request.write_text(json.dumps({
            "config": config.to_dict(), "dataset": dataset, "init_from": init_from,
            "run_name": run_name, "models_root": models_root, "result_path": str(result_path)}))
        status = distributed.launch(nproc, "colorization.torchrun", [str(request)])
        if status != 0 or not result_path.exists():
            raise RuntimeError(f"training under torchrun ({nproc} processes) failed with exit "
                               f"status {status}; see the ranks' logs above")
        return json.loads(result_path.read_text())


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    request = json.loads(Path(argv[0]).read_text())
    config = TrainConfig.from_dict(request["config"])
    result = train_stage(config, dataset=request["dataset"], init_from=request["init_from"],
                         run_name=request["run_name"], models_root=request["models_root"])
    if distributed.setup(config.device).is_main:
        storage.write_json(request["result_path"], result)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""What each torchrun process runs: `python -m colorization.torchrun REQUEST.json`.

The request (written by `train.train_stage_ddp`) holds the stage's config, dataset, parent
model, run name and where rank 0 writes the result; every rank trains, rank 0 writes.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import torch.distributed as dist

from colorization import distributed, storage
from colorization.train import TrainConfig, train_stage


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

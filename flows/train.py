"""Flow: the two training stages, pretrain (L1) then gan, each saved as a model version.

With `nproc` > 1 each stage runs under torchrun (DDP) from the task; deploy it on a GPU
work pool (prefect.yaml: `train` on `colorization-gpu`). Each stage publishes its loss
history, loss plot and validation grid as artifacts of the flow run.
"""

from __future__ import annotations

import base64
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from colorization import storage
from colorization.constants import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_DEVICE,
    DEFAULT_EPOCHS,
    DEFAULT_GAN_MODE,
    DEFAULT_PRECISION,
    DEFAULT_SEED,
    GRID_NAME,
    LOSS_PLOT_NAME,
)
from colorization.models import AUTO_GENERATOR, DEFAULT_DISCRIMINATOR, ModelSpec
from colorization.torchrun import train_stage_ddp
from colorization.train import TrainConfig
from flows.retries import healing_retries


@task(**healing_retries())
def train_stage_task(
    config: TrainConfig, dataset: str, init_from: str | None, run_name: str | None,
    nproc: int = 1,
) -> dict[str, Any]:
    return train_stage_ddp(config, nproc=nproc, dataset=dataset, init_from=init_from,
                           run_name=run_name)


@task
def publish_stage_artifacts(result: dict[str, Any]) -> None:
    """The stage's per-epoch losses (a table) and its plot and grid (markdown, inline PNGs)."""
    stage, url = result["stage"], result["model_url"]
    create_table_artifact(result["history"], key=f"{stage}-losses",
                          description=f"{stage} losses per epoch, model {result['model_id']}")
    pictures = []
    for name, caption in ((LOSS_PLOT_NAME, "losses"),
                          (GRID_NAME, "validation photos: grayscale | predicted | original")):
        address = storage.join(url, name)
        if storage.exists(address):
            data = base64.b64encode(storage.read_bytes(address)).decode("ascii")
            pictures.append(f"**{caption}** (`{address}`)\n\n![{caption}]"
                            f"(data:image/png;base64,{data})")
    create_markdown_artifact(f"## {stage}: model {result['model_id']}\n\n"
                             + "\n\n".join(pictures), key=f"{stage}-pictures",
                             description=f"{stage}: loss plot and validation grid")


@flow(name="train")
def train(
    dataset: str,
    generator: str = AUTO_GENERATOR,
    generator_options: dict[str, Any] | None = None,
    discriminator: str = DEFAULT_DISCRIMINATOR,
    pretrain_epochs: int = DEFAULT_EPOCHS,
    gan_epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = DEFAULT_DEVICE,
    precision: str = DEFAULT_PRECISION,
    seed: int = DEFAULT_SEED,
    init_from: str | None = None,
    gan_mode: str = DEFAULT_GAN_MODE,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    nproc: int = 1,
    ema_decay: float = 0.0,
) -> dict[str, Any]:
    """Run `pretrain` then `gan` (either skipped with 0 epochs); returns both stages' results.

    Retries of this flow run resume its stages from their checkpoints; a new flow run trains
    anew.
    """
    logger = get_run_logger()
    run_id = flow_run.get_id()
    common: dict[str, Any] = dict(
        generator=ModelSpec(generator, generator_options or {}),
        discriminator=ModelSpec(discriminator), batch_size=batch_size, device=device,
        precision=precision, seed=seed, gan_mode=gan_mode, checkpoint_every=checkpoint_every,
        ema_decay=ema_decay)
    results: dict[str, Any] = {}
    parent = init_from
    for stage, epochs in (("pretrain", pretrain_epochs), ("gan", gan_epochs)):
        if epochs <= 0:
            continue
        result = train_stage_task(TrainConfig(stage=stage, epochs=epochs, **common), dataset,
                                  parent, f"{run_id}-{stage}" if run_id else None, nproc)
        publish_stage_artifacts(result)
        logger.info("stage %s -> model %s (%d steps, %.1f s)", stage, result["model_id"],
                    result["steps"], result["seconds"])
        results[stage], parent = result, result["model_id"]
    if not results:
        raise ValueError("both pretrain_epochs and gan_epochs are 0: nothing to train")
    results["model_id"] = parent
    return results

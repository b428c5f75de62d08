"""Flow: the two training stages, pretrain (L1) then gan, each saved as a model version."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run

from colorization.constants import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_EPOCHS,
    DEFAULT_PRECISION,
    DEFAULT_SEED,
)
from colorization.models import DEFAULT_DISCRIMINATOR, DEFAULT_GENERATOR, ModelSpec
from colorization.train import TrainConfig, train_stage


@task(retries=1, retry_delay_seconds=5)
def train_stage_task(
    config: TrainConfig, dataset: str, init_from: str | None, run_name: str | None
) -> dict[str, Any]:
    return train_stage(config, dataset=dataset, init_from=init_from, run_name=run_name)


@flow(name="train")
def train(
    dataset: str,
    generator: str = DEFAULT_GENERATOR,
    generator_options: dict[str, Any] | None = None,
    discriminator: str = DEFAULT_DISCRIMINATOR,
    pretrain_epochs: int = DEFAULT_EPOCHS,
    gan_epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = DEFAULT_DEVICE,
    precision: str = DEFAULT_PRECISION,
    seed: int = DEFAULT_SEED,
    init_from: str | None = None,
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
        precision=precision, seed=seed)
    results: dict[str, Any] = {}
    parent = init_from
    for stage, epochs in (("pretrain", pretrain_epochs), ("gan", gan_epochs)):
        if epochs <= 0:
            continue
        result = train_stage_task(TrainConfig(stage=stage, epochs=epochs, **common), dataset,
                                  parent, f"{run_id}-{stage}" if run_id else None)
        logger.info("stage %s -> model %s (%d steps, %.1f s)", stage, result["model_id"],
                    result["steps"], result["seconds"])
        results[stage], parent = result, result["model_id"]
    if not results:
        raise ValueError("both pretrain_epochs and gan_epochs are 0: nothing to train")
    results["model_id"] = parent
    return results

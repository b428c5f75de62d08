"""Flow: colour photos in a folder or prefix -> an immutable Lab-shard snapshot."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from colorization.constants import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_SAMPLE_SIZE,
    DEFAULT_SEED,
    DEFAULT_SHARD_SIZE,
    DEFAULT_VAL_FRACTION,
)
from colorization.shards import PrepareConfig, prepare_dataset


@task(retries=2, retry_delay_seconds=10)
def prepare_dataset_task(config: PrepareConfig) -> str:
    return prepare_dataset(config)


@flow(name="prepare-data")
def prepare_data(
    source: str,
    output: str | None = None,
    seed: int = DEFAULT_SEED,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    image_size: int = DEFAULT_IMAGE_SIZE,
    shard_size: int = DEFAULT_SHARD_SIZE,
) -> str:
    """Sample, split and shard `source`; returns the dataset URL (a no-op when it exists)."""
    config = PrepareConfig(source=source, output=output, seed=seed, sample_size=sample_size,
                           val_fraction=val_fraction, image_size=image_size,
                           shard_size=shard_size)
    dataset = prepare_dataset_task(config)
    get_run_logger().info("dataset ready at %s", dataset)
    return dataset


if __name__ == "__main__":
    import sys

    prepare_data(source=sys.argv[1])

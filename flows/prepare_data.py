"""Flow: colour photos (a folder, a prefix or coco://<split>) -> an immutable Lab snapshot.

Download batches, conversion batches and shards are mapped over Prefect tasks, each a thin
call into colorization.shards; a progress artifact follows the walk and a markdown
artifact summarises the snapshot.
"""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from colorization.constants import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_SAMPLE_SIZE,
    DEFAULT_SEED,
    DEFAULT_SHARD_SIZE,
    DEFAULT_VAL_FRACTION,
)
from colorization.shards import (
    Plan,
    PrepareConfig,
    batches_to_run,
    convert_batch,
    fetch_batch,
    plan_snapshot,
    select_sample,
    summary_markdown,
    write_manifest,
    write_shard,
)
from flows.retries import healing_retries

# NO_CACHE: hashing thousands of outcome dicts for cache keys buys nothing; the library
# functions are idempotent and resume from their own staged work.


@task(**healing_retries(), cache_policy=NO_CACHE)
def plan_snapshot_task(config: PrepareConfig) -> Plan:
    return plan_snapshot(config)


@task(**healing_retries(), cache_policy=NO_CACHE)
def fetch_batch_task(plan: Plan, index: int) -> dict[str, int]:
    return fetch_batch(plan, index)


@task(**healing_retries(), cache_policy=NO_CACHE)
def convert_batch_task(plan: Plan, index: int) -> list[dict[str, Any]]:
    return convert_batch(plan, index)


@task(cache_policy=NO_CACHE)
def select_sample_task(plan: Plan, results: list[list[dict[str, Any]]]) -> dict[str, int]:
    return select_sample(plan, results)


@task(**healing_retries(), cache_policy=NO_CACHE)
def write_shard_task(plan: Plan, split: str, index: int) -> dict[str, Any]:
    return write_shard(plan, split, index)


@task(**healing_retries(), cache_policy=NO_CACHE)
def write_manifest_task(plan: Plan, shards: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return write_manifest(plan, shards)


@flow(name="prepare-data")
def prepare_data(
    source: str,
    output: str | None = None,
    seed: int = DEFAULT_SEED,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    image_size: int = DEFAULT_IMAGE_SIZE,
    shard_size: int = DEFAULT_SHARD_SIZE,
    exclude: str | None = None,
    coco_mirror: str | None = None,
    workers: int | None = None,
) -> str:
    """Sample, filter, split and shard `source`; returns the dataset URL (a no-op when it
    exists). `source` may be coco://<split>, read from `coco_mirror`."""
    logger = get_run_logger()
    config = PrepareConfig(source=source, output=output, seed=seed, sample_size=sample_size,
                           val_fraction=val_fraction, image_size=image_size,
                           shard_size=shard_size, exclude=exclude, coco_mirror=coco_mirror,
                           workers=workers)
    plan = plan_snapshot_task(config)
    if plan.done:
        logger.info("dataset %s already prepared", plan.out)
        return plan.out
    # Called from a sync flow, the artifact helpers return values, not coroutines.
    progress = cast(UUID, create_progress_artifact(0.0, description=f"prepare {source}"))
    results: list[list[dict[str, Any]]] = []
    while todo := batches_to_run(plan, results):
        fetched = fetch_batch_task.map(unmapped(plan), todo).result()  # raises on failure
        downloaded = sum(f["downloaded"] for f in fetched)
        converted = convert_batch_task.map(unmapped(plan), todo)
        results.extend(future.result() for future in converted)
        kept = sum(1 for batch in results for r in batch if r["reason"] is None)
        update_progress_artifact(progress, min(100.0, 100.0 * kept / sample_size))
        logger.info("%d batches done (%d photos downloaded now): %d of %d photos in",
                    len(results), downloaded, kept, sample_size)
    counts = select_sample_task(plan, results)
    futures = {split: write_shard_task.map(unmapped(plan), unmapped(split), range(count))
               for split, count in counts.items()}
    shards = {split: [f.result() for f in split_futures]
              for split, split_futures in futures.items()}
    manifest = write_manifest_task(plan, shards)
    update_progress_artifact(progress, 100.0)
    create_markdown_artifact(summary_markdown(plan.out, manifest), key="dataset-snapshot",
                             description="the prepared dataset snapshot")
    logger.info("dataset ready at %s", plan.out)
    return plan.out


if __name__ == "__main__":
    import sys

    prepare_data(source=sys.argv[1])

"""Flow: colorize an incoming prefix into an output prefix, exactly once, in parallel chunks.

Plans (lists the input, reads the manifest), then maps one task over chunks of the inputs
left to do. The task runner is a parameter: threads in this process by default, or a Dask
cluster (`runner="dask"` with a scheduler `dask_address`, or a LocalCluster of `workers`
processes when no address is given) to scale out across machines. Each run publishes a
progress artifact and a table of the inputs that failed, with their reasons.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from colorization.bulk import BulkConfig, ChunkReport, Item, Plan, plan_bucket, run_chunk
from colorization.constants import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_INFERENCE_BATCH,
    DEFAULT_INFERENCE_PRECISION,
)
from flows.retries import healing_retries

# Chunks colorized at once by the default runner (each chunk also runs its own I/O threads).
DEFAULT_CHUNK_THREADS = 2


def _threads(workers: int, address: str | None) -> Any:
    return ThreadPoolTaskRunner(max_workers=workers)


def _dask(workers: int, address: str | None) -> Any:
    from prefect_dask import DaskTaskRunner  # imported only when asked for

    if address:
        return DaskTaskRunner(address=address)
    # One single-threaded process per worker: torch uses the cores inside each process.
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": workers, "threads_per_worker": 1,
                                          "processes": True,
                                          "dashboard_address": "127.0.0.1:0",
                                          "host": "127.0.0.1"})


# `runner` choices: name -> builder(workers, dask scheduler address).
TASK_RUNNERS: dict[str, Callable[[int, str | None], TaskRunner[Any]]] = {
    "threads": _threads,
    "dask": _dask,
}


@task(**healing_retries())
def plan_task(source: str, destination: str, model: str | None, config: BulkConfig) -> Plan:
    return plan_bucket(source, destination, model=model, config=config)


@task(**healing_retries())
def colorize_chunk_task(source: str, destination: str, items: list[Item], model_url: str,
                        config: BulkConfig) -> ChunkReport:
    return run_chunk(source, destination, items, model_url=model_url, config=config)


@flow(name="colorize-chunks")
def colorize_chunks(plan: Plan, config: BulkConfig) -> dict[str, Any]:
    """Maps the chunk task over the plan's chunks; runs under the chosen task runner."""
    logger = get_run_logger()
    chunks = plan.chunks(config.chunk_size)
    description = (f"{plan.source} -> {plan.destination}: {len(plan.todo)} images in "
                   f"{len(chunks)} chunks, model {plan.model_id}")
    # Called from a sync flow, these return their value, not a coroutine.
    progress = cast(UUID, create_progress_artifact(progress=0.0, description=description))
    futures = colorize_chunk_task.map(plan.source, plan.destination, chunks, plan.model_url,
                                      config)
    done, failed, finished = 0, {}, 0
    for future in as_completed(list(futures)):
        result: ChunkReport = future.result()
        done += len(result.done)
        failed.update(result.failed)
        finished += len(result.done) + len(result.failed)
        update_progress_artifact(progress, progress=100.0 * finished / max(len(plan.todo), 1))
        logger.info("%d/%d images (%d failed)", finished, len(plan.todo), len(failed))
    return {"done": done, "failed": failed}


@flow(name="colorize-bucket")
def colorize_bucket(source: str, destination: str, model: str | None = None,
                    runner: str = "threads", workers: int = DEFAULT_CHUNK_THREADS,
                    dask_address: str | None = None,
                    chunk_size: int = DEFAULT_CHUNK_SIZE,
                    batch_size: int = DEFAULT_INFERENCE_BATCH, device: str = DEFAULT_DEVICE,
                    precision: str = DEFAULT_INFERENCE_PRECISION) -> dict[str, Any]:
    """Colorize every image under `source` not yet done into `destination`.

    `model` is a model id (default: the champion); `runner` is "threads" or "dask";
    `workers` the chunks run at once (threads) or LocalCluster processes (dask without
    `dask_address`). Returns counts; the failures are in the run's table artifact.
    """
    if runner not in TASK_RUNNERS:
        raise ValueError(f"unknown runner {runner!r}; use one of {', '.join(TASK_RUNNERS)}")
    logger = get_run_logger()
    config = BulkConfig(batch_size=batch_size, device=device, precision=precision,
                        chunk_size=chunk_size)
    plan = plan_task(source, destination, model, config)
    logger.info("model %s: %d to do, %d done before, %d known bad, %d ignored", plan.model_id,
                len(plan.todo), plan.already_done, len(plan.known_failed), len(plan.ignored))
    result: dict[str, Any] = {"done": 0, "failed": {}}
    if plan.todo:
        chunks_flow = colorize_chunks.with_options(
            task_runner=TASK_RUNNERS[runner](workers, dask_address))
        result = chunks_flow(plan, config)
    failures = [{"key": key, "error": error, "when": "this run"}
                for key, error in sorted(result["failed"].items())]
    failures += [{"key": key, "error": error, "when": "earlier (same file and model)"}
                 for key, error in sorted(plan.known_failed.items())]
    create_table_artifact(table=failures or [{"key": "", "error": "", "when": ""}],
                          key="colorize-bucket-failures",
                          description=f"Inputs under {source} that failed")
    summary = {"model_id": plan.model_id, "done": result["done"],
               "skipped": plan.already_done, "failed": len(result["failed"]),
               "failed_before": len(plan.known_failed), "ignored": len(plan.ignored)}
    logger.info("summary: %s", summary)
    return summary

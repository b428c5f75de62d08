"""Flow: metrics of a model version on a dataset's validation split, into its card."""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from colorization.constants import (
    DEFAULT_DEVICE,
    DEFAULT_EVAL_BATCH,
    DEFAULT_EVAL_SPLIT,
    DEFAULT_PRECISION,
)
from colorization.evaluate import EvalConfig, evaluate_model


@task(retries=1, retry_delay_seconds=5)
def evaluate_model_task(model: str, dataset: str, config: EvalConfig) -> dict[str, float]:
    return evaluate_model(model, dataset=dataset, config=config)


@flow(name="evaluate")
def evaluate(model: str, dataset: str, split: str = DEFAULT_EVAL_SPLIT,
             batch_size: int = DEFAULT_EVAL_BATCH, device: str = DEFAULT_DEVICE,
             precision: str = DEFAULT_PRECISION) -> dict[str, float]:
    """Evaluate `model` (id or URL) on `dataset`; returns the metrics."""
    result = evaluate_model_task(model, dataset, EvalConfig(
        split=split, batch_size=batch_size, device=device, precision=precision))
    get_run_logger().info("metrics of %s: %s", model, result)
    return result

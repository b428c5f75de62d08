"""Flow: metrics of a model version beside its baselines, into its card and two artifacts."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from colorization.constants import (
    DEFAULT_DEVICE,
    DEFAULT_EVAL_BATCH,
    DEFAULT_EVAL_SPLIT,
    DEFAULT_PRECISION,
)
from colorization.evaluate import EvalConfig, evaluate_model, format_table, table_rows


@task(retries=1, retry_delay_seconds=5)
def evaluate_model_task(model: str, dataset: str, config: EvalConfig) -> dict[str, Any]:
    return evaluate_model(model, dataset=dataset, config=config)


@task
def publish_evaluation_task(record: dict[str, Any]) -> None:
    """The side-by-side table as a Prefect table artifact and a markdown artifact."""
    key = "evaluation-" + _artifact_key(record["subjects"]["model"]["model_id"])
    create_table_artifact(key=key + "-table", table=table_rows(record),
                          description=f"Evaluation of {record['subjects']['model']['model_id']}")
    create_markdown_artifact(key=key, markdown=format_table(record),
                             description="model beside its parent, champion and grayscale")


def _artifact_key(text: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "".join(c if c.isalnum() else "-" for c in text.lower())


@flow(name="evaluate")
def evaluate(model: str, dataset: str, split: str = DEFAULT_EVAL_SPLIT,
             batch_size: int = DEFAULT_EVAL_BATCH, device: str = DEFAULT_DEVICE,
             precision: str = DEFAULT_PRECISION) -> dict[str, Any]:
    """Evaluate `model` (id or URL) on `dataset`; returns the model's mean metrics."""
    record = evaluate_model_task(model, dataset, EvalConfig(
        split=split, batch_size=batch_size, device=device, precision=precision))
    publish_evaluation_task(record)
    get_run_logger().info("evaluation of %s:\n%s", model, format_table(record))
    return record["metrics"]

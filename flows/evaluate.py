"""Flow: metrics of a model version beside its baselines, into its card and two artifacts."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)

from colorization.constants import (
    DEFAULT_DEVICE,
    DEFAULT_EVAL_BATCH,
    DEFAULT_EVAL_SPLIT,
    DEFAULT_PRECISION,
    DEFAULT_REVIEW_PORT,
)
from colorization.evaluate import EvalConfig, evaluate_model, format_table, table_rows
from colorization.review import app_url, build_model_dataset
from flows.retries import healing_retries


@task(**healing_retries())
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


@task(**healing_retries())
def build_review_task(model: str) -> str:
    return build_model_dataset(model)


@task
def link_review_task(model_id: str, name: str) -> None:
    """Link the review dataset where `colorize review` serves it."""
    create_link_artifact(key="review-" + _artifact_key(model_id),
                         link=app_url(name, port=DEFAULT_REVIEW_PORT), link_text=name,
                         description=f"FiftyOne dataset {name}: run `colorize review "
                         f"{model_id}` to serve it on 127.0.0.1:{DEFAULT_REVIEW_PORT}")


def _artifact_key(text: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return "".join(c if c.isalnum() else "-" for c in text.lower())


@flow(name="evaluate")
def evaluate(model: str, dataset: str, split: str = DEFAULT_EVAL_SPLIT,
             batch_size: int = DEFAULT_EVAL_BATCH, device: str = DEFAULT_DEVICE,
             precision: str = DEFAULT_PRECISION, review: bool = True) -> dict[str, Any]:
    """Evaluate `model` (id or URL) on `dataset`, then (`review`) build its FiftyOne review
    dataset; returns the model's mean metrics."""
    record = evaluate_model_task(model, dataset, EvalConfig(
        split=split, batch_size=batch_size, device=device, precision=precision))
    publish_evaluation_task(record)
    logger = get_run_logger()
    logger.info("evaluation of %s:\n%s", model, format_table(record))
    if review:
        model_id = record["subjects"]["model"]["model_id"]
        name = build_review_task(model_id)
        link_review_task(model_id, name)
        logger.info("review dataset %s: `colorize review %s` opens it", name, model_id)
    return record["metrics"]

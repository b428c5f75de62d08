"""Flow: prepare data -> train both stages -> evaluate -> promote. The weekly schedule."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from colorization import versions
from colorization.constants import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_EPOCHS,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_PRECISION,
    DEFAULT_REVIEW_PORT,
    DEFAULT_SAMPLE_SIZE,
    DEFAULT_SEED,
)
from colorization.evaluate import card_report
from colorization.models import AUTO_GENERATOR
from colorization.review import app_url, model_dataset_name
from flows.evaluate import evaluate
from flows.prepare_data import prepare_data
from flows.train import train


@task
def promote_if_none_task(model_id: str) -> bool:
    return versions.promote_if_none(model_id)


@task
def report_task(model_id: str, review: str | None, promoted: bool) -> None:
    """The run's artifact: the evaluation table and the review dataset's link."""
    markdown = card_report(model_id, review=review, review_url=review and app_url(
        review, port=DEFAULT_REVIEW_PORT))
    create_markdown_artifact(key="retrain-report", markdown=markdown + (
        "\n\nPromoted to champion." if promoted else "\n\nKept as a candidate."),
        description=f"retrain: model {model_id}")


@flow(name="retrain")
def retrain(
    source: str,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    image_size: int = DEFAULT_IMAGE_SIZE,
    seed: int = DEFAULT_SEED,
    generator: str = AUTO_GENERATOR,
    generator_options: dict[str, Any] | None = None,
    pretrain_epochs: int = DEFAULT_EPOCHS,
    gan_epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = DEFAULT_DEVICE,
    precision: str = DEFAULT_PRECISION,
    coco_mirror: str | None = None,
    exclude: str | None = None,
    review: bool = True,
    nproc: int = 1,
) -> dict[str, Any]:
    """The whole chain; returns dataset, model id, metrics, whether it was promoted and the
    FiftyOne review dataset (None when `review` is off).

    `source` is a folder, an s3:// prefix or coco://<split> (read from `coco_mirror`)."""
    dataset = prepare_data(source=source, sample_size=sample_size, image_size=image_size,
                           seed=seed, coco_mirror=coco_mirror, exclude=exclude)
    trained = train(dataset=dataset, generator=generator, generator_options=generator_options,
                    pretrain_epochs=pretrain_epochs, gan_epochs=gan_epochs,
                    batch_size=batch_size, device=device, precision=precision, seed=seed,
                    nproc=nproc)
    model_id = trained["model_id"]
    metrics = evaluate(model=model_id, dataset=dataset, device=device, precision=precision,
                       review=review)
    promoted = promote_if_none_task(model_id)
    review_name = model_dataset_name(model_id) if review else None
    report_task(model_id, review_name, promoted)
    get_run_logger().info("model %s %s", model_id,
                          "promoted to champion" if promoted else "kept as a candidate")
    return {"dataset": dataset, "model_id": model_id, "metrics": metrics,
            "promoted": promoted, "review": review_name,
            "stages": {k: v for k, v in trained.items() if k != "model_id"}}

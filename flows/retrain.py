"""Flow: prepare data -> train (pretrain, gan) -> evaluate -> gate -> review. The weekly
schedule.

The flat parameters (what `prefect deployment run --param` sets) are checked into one
`RetrainConfig` before any work starts, and each stage gets its part of it. The gate
(`colorization.gate`) promotes the new model only when it is no worse than the champion on
the same validation snapshot; its decision, with both models' numbers, is in the champion's
history, in the flow's result and in the `promotion-gate` markdown artifact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from colorization import gate
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
from colorization.devices import PRECISION_CHOICES, check_device_name
from colorization.evaluate import card_report
from colorization.gate import GateConfig
from colorization.models import AUTO_GENERATOR
from colorization.review import app_url, model_dataset_name
from flows.evaluate import evaluate
from flows.prepare_data import prepare_data
from flows.retries import healing_retries
from flows.train import train


@dataclass(frozen=True)
class RetrainConfig:
    """Every option of a retrain run, checked before anything runs. `gan_epochs` 0 trains
    the pretrain stage alone (a valid challenger); both 0 is an error."""

    source: str
    sample_size: int = DEFAULT_SAMPLE_SIZE
    image_size: int = DEFAULT_IMAGE_SIZE
    seed: int = DEFAULT_SEED
    generator: str = AUTO_GENERATOR
    generator_options: dict[str, Any] = field(default_factory=dict)
    pretrain_epochs: int = DEFAULT_EPOCHS
    gan_epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str = DEFAULT_DEVICE
    precision: str = DEFAULT_PRECISION
    coco_mirror: str | None = None
    exclude: str | None = None
    review: bool = True
    nproc: int = 1
    ema_decay: float = 0.0  # both stages save this moving average of G (0: off)

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError("retrain: source is empty; give a folder, s3:// prefix or "
                             "coco://<split>")
        for name in ("sample_size", "image_size", "batch_size", "nproc"):
            if getattr(self, name) < 1:
                raise ValueError(f"retrain: {name} must be at least 1, got "
                                 f"{getattr(self, name)}")
        if self.pretrain_epochs < 0 or self.gan_epochs < 0:
            raise ValueError("retrain: epochs must be 0 (skip the stage) or more")
        if self.pretrain_epochs == 0 and self.gan_epochs == 0:
            raise ValueError("retrain: both pretrain_epochs and gan_epochs are 0: nothing "
                             "to train")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"retrain: ema_decay must be in [0, 1) (0: off), got "
                             f"{self.ema_decay}")
        check_device_name(self.device)
        if self.precision not in PRECISION_CHOICES:
            raise ValueError(f"retrain: unknown precision {self.precision!r}; known: "
                             f"{', '.join(PRECISION_CHOICES)}")

    def gate(self) -> GateConfig:
        """The gate evaluates on the run's device and precision."""
        return GateConfig(device=self.device, precision=self.precision)


@task(**healing_retries())
def gate_task(model_id: str, dataset: str, config: GateConfig) -> dict[str, Any]:
    return gate.decide(model_id, dataset=dataset, config=config)


@task
def publish_decision_task(decision: dict[str, Any]) -> None:
    """The gate's decision with both models' numbers, as its own artifact."""
    create_markdown_artifact(key="promotion-gate", markdown=gate.decision_markdown(decision),
                             description=f"promotion gate: {decision['challenger']} "
                             f"{'promoted' if decision['promoted'] else 'refused'}")


@task
def report_task(model_id: str, review: str | None, decision: dict[str, Any]) -> None:
    """The run's artifact: the evaluation table, the gate's decision, the review's link."""
    markdown = card_report(model_id, review=review, review_url=review and app_url(
        review, port=DEFAULT_REVIEW_PORT))
    create_markdown_artifact(key="retrain-report", markdown=markdown + "\n\n"
                             + gate.decision_markdown(decision),
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
    ema_decay: float = 0.0,
) -> dict[str, Any]:
    """The whole chain; returns dataset, model id, metrics, the gate's `decision` (and
    `promoted`), the FiftyOne review dataset (None when `review` is off) and the stages.

    `source` is a folder, an s3:// prefix or coco://<split> (read from `coco_mirror`)."""
    config = RetrainConfig(
        source=source, sample_size=sample_size, image_size=image_size, seed=seed,
        generator=generator, generator_options=generator_options or {},
        pretrain_epochs=pretrain_epochs, gan_epochs=gan_epochs, batch_size=batch_size,
        device=device, precision=precision, coco_mirror=coco_mirror, exclude=exclude,
        review=review, nproc=nproc, ema_decay=ema_decay)
    dataset = prepare_data(source=config.source, sample_size=config.sample_size,
                           image_size=config.image_size, seed=config.seed,
                           coco_mirror=config.coco_mirror, exclude=config.exclude)
    trained = train(dataset=dataset, generator=config.generator,
                    generator_options=config.generator_options,
                    pretrain_epochs=config.pretrain_epochs, gan_epochs=config.gan_epochs,
                    batch_size=config.batch_size, device=config.device,
                    precision=config.precision, seed=config.seed, nproc=config.nproc,
                    ema_decay=config.ema_decay)
    model_id = trained["model_id"]
    # Evaluated beside the champion as it stands now; the gate reuses that column.
    metrics = evaluate(model=model_id, dataset=dataset, device=config.device,
                       precision=config.precision, review=config.review)
    decision = gate_task(model_id, dataset, config.gate())
    publish_decision_task(decision)
    review_name = model_dataset_name(model_id) if config.review else None
    report_task(model_id, review_name, decision)
    get_run_logger().info("model %s %s: %s", model_id, "promoted to champion"
                          if decision["promoted"] else "kept as a candidate",
                          decision["reason"])
    return {"dataset": dataset, "model_id": model_id, "metrics": metrics,
            "promoted": decision["promoted"], "decision": decision, "review": review_name,
            "stages": {k: v for k, v in trained.items() if k != "model_id"}}

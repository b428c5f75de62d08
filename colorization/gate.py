"""The promotion gate: a challenger replaces the champion only when it is no worse.

The rule (margins in colorization.constants, GATE_*), on the `val` split of ONE dataset
snapshot, with the per-photo means `colorize evaluate` reports (lower is better for both):

    challenger ciede2000        <= champion ciede2000        + GATE_CIEDE2000_MARGIN (0.0)
    challenger colorfulness_gap <= champion colorfulness_gap + GATE_COLORFULNESS_GAP_MARGIN (2.0)

Both must hold. The colour error may not grow at all; the colourfulness gap
(|colourfulness - the truth's|) may wander by the margin, because a model that is as
accurate but a little more or less vivid is not worse for it.

The snapshot is the one the challenger was evaluated on (else the one it was trained on)
unless a dataset is given. Numbers are reused only when they were computed on that very
snapshot (same manifest sha256) and split (the champion's may come from the challenger's
evaluation, which runs the champion beside it); otherwise the model is evaluated there first,
and those numbers are stored in its card under `gate_evaluations` (keyed
`<manifest sha256>/<split>`) so the next decision reuses them. With no champion the
challenger is promoted with the reason "first model".

Every decision, promotions and refusals alike, is appended to the champion pointer's
history (`versions.record_decision`) and returned, so a flow can publish it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from colorization import versions
from colorization.constants import (
    DEFAULT_DEVICE,
    DEFAULT_EVAL_BATCH,
    DEFAULT_EVAL_SPLIT,
    DEFAULT_PRECISION,
    GATE_CIEDE2000_MARGIN,
    GATE_COLORFULNESS_GAP_MARGIN,
)
from colorization.evaluate import EvalConfig, evaluate_model
from colorization.shards import manifest_digest, read_manifest

logger = logging.getLogger(__name__)

FIRST_MODEL_REASON = "first model"
GATE_EVALUATIONS = "gate_evaluations"  # card key: numbers computed for a gate decision


@dataclass(frozen=True)
class Criterion:
    """One clause of the rule: the challenger's mean `metric` (lower is better) is at most
    the champion's + `margin`."""

    metric: str
    margin: float

    def check(self, challenger: dict[str, Any], champion: dict[str, Any]) -> dict[str, Any]:
        ours, theirs = float(challenger[self.metric]), float(champion[self.metric])
        limit = theirs + self.margin
        return {"metric": self.metric, "challenger": ours, "champion": theirs,
                "margin": self.margin, "limit": round(limit, 6), "passed": ours <= limit}

    def describe(self) -> str:
        return f"{self.metric} <= champion's + {self.margin:g}"


@dataclass(frozen=True)
class GateConfig:
    """The rule's margins and how missing numbers are computed."""

    ciede2000_margin: float = GATE_CIEDE2000_MARGIN
    colorfulness_gap_margin: float = GATE_COLORFULNESS_GAP_MARGIN
    split: str = DEFAULT_EVAL_SPLIT
    batch_size: int = DEFAULT_EVAL_BATCH
    device: str = DEFAULT_DEVICE
    precision: str = DEFAULT_PRECISION

    def __post_init__(self) -> None:
        if self.ciede2000_margin < 0 or self.colorfulness_gap_margin < 0:
            raise ValueError("gate margins must be 0 or more: a negative margin would refuse "
                             "a challenger identical to the champion")

    def criteria(self) -> tuple[Criterion, ...]:
        return (Criterion("ciede2000", self.ciede2000_margin),
                Criterion("colorfulness_gap", self.colorfulness_gap_margin))

    def rule(self) -> str:
        return (" and ".join(c.describe() for c in self.criteria())
                + f" (means over the {self.split} split of the same snapshot; lower is better)")


def decide(
    challenger: str, *, dataset: str | None = None, config: GateConfig | None = None,
    models_root: str | None = None,
) -> dict[str, Any]:
    """Run the gate for `challenger` (a model id) and record the decision; returns the
    history entry: `challenger`, `champion` (before), `promoted`, `forced` (False),
    `reason`, `rule`, `dataset`, `dataset_snapshot`, `dataset_manifest_sha256`, `split`,
    `metrics`
    ({"challenger": means, "champion": means or None}), `checks` (one per criterion),
    `model_id` (the champion after) and `decided_at`."""
    config = config or GateConfig()
    card = versions.read_card(challenger, models_root=models_root)
    challenger = card["model_id"]
    champion = versions.champion(models_root=models_root)
    dataset = dataset or (card.get("evaluated_on") or {}).get("dataset") or card.get("dataset")
    if not dataset:
        raise ValueError(f"model {challenger}: no evaluation or training dataset in its card; "
                         "name the validation snapshot")
    digest = manifest_digest(dataset)
    snapshot = str(read_manifest(dataset).get("inputs_digest", ""))[:12] or None
    decision: dict[str, Any] = {
        "challenger": challenger, "champion": champion, "forced": False, "rule": config.rule(),
        "dataset": dataset, "dataset_snapshot": snapshot, "dataset_manifest_sha256": digest,
        "split": config.split}
    if champion is None:
        # Nothing to compare with: numbers are recorded when they exist, never computed.
        known = _known_metrics(card, dataset, digest, config.split)
        return versions.record_decision({
            **decision, "promoted": True, "reason": FIRST_MODEL_REASON,
            "metrics": {"challenger": known, "champion": None}, "checks": []},
            models_root=models_root)
    if champion == challenger:
        return {**decision, "promoted": False, "reason": "already the champion",
                "model_id": champion, "metrics": {}, "checks": []}
    ours = metrics_on(challenger, dataset=dataset, config=config, models_root=models_root)
    theirs = _champion_column(card, champion, digest, config.split) or metrics_on(
        champion, dataset=dataset, config=config, models_root=models_root)
    checks = [criterion.check(ours, theirs) for criterion in config.criteria()]
    promoted = all(check["passed"] for check in checks)
    return versions.record_decision({
        **decision, "promoted": promoted, "reason": _reason(promoted, champion, checks),
        "metrics": {"challenger": ours, "champion": theirs}, "checks": checks},
        models_root=models_root)


def metrics_on(model_id: str, *, dataset: str, config: GateConfig,
               models_root: str | None = None) -> dict[str, Any]:
    """A model's mean metrics on `dataset`'s split: from its card when computed on that very
    snapshot, else evaluated now (without touching its own evaluation) and stored."""
    card = versions.read_card(model_id, models_root=models_root)
    digest = manifest_digest(dataset)
    known = _known_metrics(card, dataset, digest, config.split)
    if known is not None:
        return known
    logger.info("evaluating %s on %s (%s) for the gate", model_id, dataset, config.split)
    record = evaluate_model(model_id, dataset=dataset, models_root=models_root, config=EvalConfig(
        split=config.split, batch_size=config.batch_size, device=config.device,
        precision=config.precision, compare=False, write_images=False, update_card=False))
    stored = dict(card.get(GATE_EVALUATIONS) or {})
    stored[f"{digest}/{config.split}"] = {
        "dataset": dataset, "split": config.split, "metrics": record["metrics"],
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    versions.update_card(model_id, {GATE_EVALUATIONS: stored}, models_root=models_root)
    return dict(record["metrics"])


def _known_metrics(card: dict[str, Any], dataset: str, digest: str,
                   split: str) -> dict[str, Any] | None:
    """Numbers the card already holds for this snapshot and split, or None."""
    seen = card.get("evaluated_on") or {}
    same = seen.get("dataset_manifest_sha256") == digest or (
        # Cards evaluated before the digest was recorded: snapshots are immutable, so the
        # same URL is the same data.
        "dataset_manifest_sha256" not in seen
        and str(seen.get("dataset", "")).rstrip("/") == dataset.rstrip("/"))
    if same and seen.get("split") == split and card.get("metrics"):
        return dict(card["metrics"])
    stored = (card.get(GATE_EVALUATIONS) or {}).get(f"{digest}/{split}")
    return dict(stored["metrics"]) if stored else None


def _champion_column(card: dict[str, Any], champion: str, digest: str,
                     split: str) -> dict[str, Any] | None:
    """The champion's means from the challenger's own evaluation, which ran the champion
    beside it on the same photos (retrain's case): no second pass over the snapshot."""
    seen, record = card.get("evaluated_on") or {}, card.get("evaluation") or {}
    if seen.get("dataset_manifest_sha256") != digest or seen.get("split") != split:
        return None
    if (record.get("subjects", {}).get("champion") or {}).get("model_id") != champion:
        return None
    column = record.get("summary", {}).get("champion") or {}
    return {name: value["mean"] if isinstance(value, dict) else value
            for name, value in column.items()} or None


def _reason(promoted: bool, champion: str, checks: list[dict[str, Any]]) -> str:
    parts = [f"{c['metric']} {c['challenger']:.4f} {'<=' if c['passed'] else '>'} "
             f"{c['champion']:.4f} + {c['margin']:g}" for c in checks]
    verdict = "no worse than" if promoted else "worse than"
    return f"{verdict} champion {champion}: " + ", ".join(parts)


def decision_markdown(entry: dict[str, Any]) -> str:
    """A decision as markdown: the verdict, the rule and both models' numbers."""
    verdict = "promoted to champion" if entry["promoted"] else "refused; champion kept"
    if entry.get("forced"):
        verdict = "promoted by force (gate bypassed)"
    lines = [f"## Promotion gate: {entry['challenger']} {verdict}", "",
             f"Reason: {entry.get('reason', '')}", "",
             f"Rule: {entry.get('rule', '-')}", "",
             f"Snapshot: `{entry.get('dataset', '-')}` ({entry.get('split', '-')}); "
             f"champion before: {entry.get('champion') or 'none'}; "
             f"champion now: {entry.get('model_id')}."]
    numbers = entry.get("metrics") or {}
    ours, theirs = numbers.get("challenger") or {}, numbers.get("champion") or {}
    if ours or theirs:
        limits = {c["metric"]: c for c in entry.get("checks", [])}
        lines += ["", "| metric | challenger | champion | limit | passed |",
                  "|---|---|---|---|---|"]
        for name in sorted(set(ours) | set(theirs)):
            check = limits.get(name)
            lines.append(f"| {name} | {_cell(ours.get(name))} | {_cell(theirs.get(name))} | "
                         f"{_cell(check['limit']) if check else ''} | "
                         f"{('yes' if check['passed'] else 'NO') if check else ''} |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))

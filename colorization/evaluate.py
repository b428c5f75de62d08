"""Run a model over a snapshot's split beside its baselines; per-photo and summary metrics.

Every metric is computed on the prediction recombined with the true L. The model is compared
with three references that cannot flatter it: leaving the photo gray (ab = 0), its parent
stage (the U-Net-only `pretrain` model a `gan` model was fine-tuned from) and the champion.
Results go into the model card under `evaluation` (the flat means of the model stay under
`metrics`), and the model's grayscale / colorized / original images are written once beside
it, `<model>/evaluation/<split>/<slice>/<photo>.png`, for the FiftyOne review.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import torch
import webdataset as wds
from torch import nn

from colorization import color, metrics, storage, versions
from colorization.constants import (
    DEFAULT_DEVICE,
    DEFAULT_EVAL_BATCH,
    DEFAULT_EVAL_SPLIT,
    DEFAULT_PRECISION,
    EVAL_CONFIDENCE,
    EVAL_DIR,
    EVAL_SLICES,
)
from colorization.data import local_shards
from colorization.devices import autocast, select_device, select_precision
from colorization.samples import filter_scores
from colorization.shards import manifest_digest, read_manifest, sample_lab

logger = logging.getLogger(__name__)

# Per-photo metrics, in table order, with whether lower is better (for the reader).
PHOTO_METRICS: dict[str, str] = {
    "ciede2000": "mean CIEDE2000 to the truth (lower is better)",
    "ssim": "SSIM on RGB (higher is better)",
    "psnr": "PSNR on RGB, dB (higher is better)",
    "colorfulness": "Hasler-Suesstrunk colourfulness of the result",
    "colorfulness_gap": "|colourfulness - the truth's| (lower is better)",
}
TRUTH_METRIC = "colorfulness_ground_truth"
# Roles of the columns, in table order; `grayscale` is the ab = 0 baseline.
ROLES = ("model", "parent", "champion", "grayscale")

Progress = Callable[[int, int], None]  # (photos done, photos in the split)


@dataclass(frozen=True)
class EvalConfig:
    """Options of `evaluate_model`."""

    split: str = DEFAULT_EVAL_SPLIT
    batch_size: int = DEFAULT_EVAL_BATCH
    device: str = DEFAULT_DEVICE
    precision: str = DEFAULT_PRECISION
    compare: bool = True  # also run the parent stage and the champion
    write_images: bool = True  # the review's grayscale / colorized / original PNGs
    fid_weights: str | None = None  # torchvision Inception-v3 weights; FID is skipped without
    update_card: bool = True  # False: only return the record (the gate's champion re-runs)


def iter_split(
    dataset: str, split: str, batch_size: int
) -> Iterator[tuple[list[str], torch.Tensor]]:
    """(photo ids, Lab [B, 3, S, S]) batches of one split, in shard order, with their ids."""
    # Raw samples: `sample_lab` decodes either shard format (WebP or float16 npy).
    pipeline = wds.WebDataset(local_shards(dataset, split), shardshuffle=False,
                              empty_check=False)
    ids: list[str] = []
    labs: list[torch.Tensor] = []
    for sample in pipeline:
        ids.append(str(json.loads(sample["json"])["id"]))
        labs.append(sample_lab(sample))
        if len(ids) == batch_size:
            yield ids, torch.stack(labs)
            ids, labs = [], []
    if ids:
        yield ids, torch.stack(labs)


def photo_metrics(pred: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every per-photo metric of sRGB batches [B, 3, S, S]: name -> [B] on the CPU."""
    return {
        "ciede2000": metrics.ciede2000(pred, truth),
        "ssim": metrics.ssim(pred, truth).cpu(),
        "psnr": metrics.psnr(pred, truth).cpu(),
        "colorfulness": metrics.colorfulness(pred).cpu(),
        "colorfulness_gap": metrics.colorfulness_gap(pred, truth).cpu(),
    }


def image_names(ids: list[str]) -> dict[str, str]:
    """Photo id -> relative PNG name: the id with a .png suffix (kept whole on a clash)."""
    names = {i: str(PurePosixPath(i).with_suffix(".png")) for i in ids}
    if len(set(names.values())) < len(names):
        names = {i: f"{i}.png" for i in ids}
    return names


def _subjects(model_url: str, card: dict[str, Any], config: EvalConfig,
              models_root: str | None) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Columns other than grayscale: role -> {"model_id", "stage"}; plus notes."""
    subjects = {"model": {"model_id": card["model_id"], "stage": card.get("stage")}}
    notes: list[str] = []
    if not config.compare:
        return subjects, notes
    references = {"parent": card.get("parent"),
                  "champion": versions.champion(models_root=models_root)}
    for role, ref in references.items():
        if not ref:
            notes.append(f"no {role}" + (" stage" if role == "parent" else " promoted yet"))
            continue
        if ref == card["model_id"]:
            notes.append(f"the model is the {role}")
            continue
        try:
            other = versions.read_card(ref, models_root=models_root)
        except FileNotFoundError:
            notes.append(f"{role} {ref} not found under the models root; not compared")
            continue
        subjects[role] = {"model_id": other["model_id"], "stage": other.get("stage")}
    logger.debug("evaluating %s beside %s", model_url, subjects)
    return subjects, notes


def _summary(values: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    out = {}
    for name, series in values.items():
        mean, low, high = metrics.mean_interval(series, confidence=EVAL_CONFIDENCE)
        out[name] = {"mean": round(mean, 4), "low": round(low, 4), "high": round(high, 4)}
    return out


@torch.no_grad()
def evaluate_model(
    model: str, *, dataset: str, config: EvalConfig | None = None,
    models_root: str | None = None, progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate `model` on one split beside its baselines; returns the card's `evaluation`.

    The record holds `summary` (role -> metric -> mean and 95% interval), `per_photo`
    (photo id -> the model's metrics), `subjects`, `notes` and `metrics` (the model's means,
    also the card's `metrics`).
    """
    config = config or EvalConfig()
    device = select_device(config.device)
    precision = select_precision(config.precision, device=device)
    model_url = versions.resolve(model, models_root=models_root)
    generator, card = versions.load_generator(model_url, device=device)
    subjects, notes = _subjects(model_url, card, config, models_root)
    generators: dict[str, nn.Module] = {card["model_id"]: generator}
    for info in subjects.values():
        if info["model_id"] not in generators:
            generators[info["model_id"]] = versions.load_generator(
                info["model_id"], models_root=models_root, device=device)[0]
    # LPIPS needs its backbone's weights too; not computed yet (noted so nobody assumes it).
    notes.append("LPIPS not computed (not available in this version)")
    fid = metrics.FidFeatures(config.fid_weights, device=device) if config.fid_weights else None
    if fid is None:
        notes.append("FID skipped: no --fid-weights file given")
    features: dict[str, list[torch.Tensor]] = {}  # role -> FID features per batch

    manifest = read_manifest(dataset)
    if config.split not in manifest["splits"]:
        raise ValueError(f"{dataset}: no split {config.split!r}; has "
                         f"{sorted(manifest['splits'])}")
    total = int(manifest["splits"][config.split]["count"])
    names = image_names(list(manifest["splits"][config.split]["ids"]))
    images_url = storage.join(model_url, EVAL_DIR, config.split)
    per_role: dict[str, dict[str, list[float]]] = {role: {} for role in [*subjects, "grayscale"]}
    per_photo: dict[str, dict[str, float]] = {}
    truth_colorfulness: list[float] = []
    done = 0
    for ids, lab in iter_split(dataset, config.split, config.batch_size):
        lab = lab.to(device)
        l_norm = color.normalize_l(lab[:, :1])  # [B, 1, S, S]
        truth = color.model_output_to_rgb(l_norm, color.normalize_ab(lab[:, 1:]))
        gray = color.model_output_to_rgb(l_norm, torch.zeros_like(lab[:, 1:]))
        preds: dict[str, torch.Tensor] = {}
        for model_id, net in generators.items():
            with autocast(device, precision):
                ab_pred = net(l_norm)  # [B, 2, S, S]
            preds[model_id] = color.model_output_to_rgb(l_norm, ab_pred.float())
        batch = {role: photo_metrics(preds[info["model_id"]], truth)
                 for role, info in subjects.items()}
        batch["grayscale"] = photo_metrics(gray, truth)
        if fid is not None:
            images = {"truth": truth, "grayscale": gray, **{
                role: preds[info["model_id"]] for role, info in subjects.items()}}
            for role, rgb in images.items():
                features.setdefault(role, []).append(fid(rgb))
        for role, values in batch.items():
            for name, tensor in values.items():
                per_role[role].setdefault(name, []).extend(float(v) for v in tensor)
        truth_colorfulness.extend(float(v) for v in metrics.colorfulness(truth))
        # How the truth itself looks: the review flags near-gray or single-tint originals.
        # The same scores as prepare's filters (samples.filter_scores), on 8-bit truth.
        truth_u8 = (truth.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
        scores = [filter_scores(rgb, lab_one) for rgb, lab_one
                  in zip(truth_u8.cpu().numpy(), lab.cpu().numpy(), strict=True)]
        truth_stats = {
            "truth_colorfulness": metrics.colorfulness(truth).cpu(),
            "truth_chroma": torch.tensor([s["mean_chroma"] for s in scores]),
            "truth_hue_spread": torch.tensor([s["hue_spread"] for s in scores])}
        for index, photo in enumerate(ids):
            per_photo[photo] = {name: round(float(t[index]), 4)
                                for name, t in {**batch["model"], **truth_stats}.items()}
        if config.write_images:
            _write_images(images_url, ids, names, grayscale=gray, colorized=preds[card["model_id"]],
                          original=truth)
        done += len(ids)
        if progress is not None:
            progress(done, total)
    if done == 0:
        raise ValueError(f"{dataset}: split {config.split!r} is empty")

    summary: dict[str, dict[str, Any]] = {role: _summary(values)
                                          for role, values in per_role.items()}
    summary["truth"] = _summary({TRUTH_METRIC: truth_colorfulness})
    if fid is not None:  # one value per set, no interval
        truth_features = torch.cat(features.pop("truth")).numpy()
        for role, parts in features.items():
            summary[role]["fid"] = round(metrics.frechet_distance(
                torch.cat(parts).numpy(), truth_features), 4)
    flat: dict[str, Any] = {name: value["mean"] if isinstance(value, dict) else value
                            for name, value in summary["model"].items()}
    flat["psnr_grayscale"] = summary["grayscale"]["psnr"]["mean"]  # kept from earlier cards
    flat[TRUTH_METRIC] = summary["truth"][TRUTH_METRIC]["mean"]
    flat["images"] = done
    record: dict[str, Any] = {
        "dataset": dataset, "split": config.split, "images": done,
        "confidence": EVAL_CONFIDENCE,
        "subjects": {**subjects, "grayscale": {"model_id": None, "stage": "ab = 0"}},
        "summary": summary, "metrics": flat, "notes": [n for n in notes if n],
        "images_url": images_url if config.write_images else None,
        "image_names": names if config.write_images else {},
        "per_photo": per_photo,
    }
    record["table"] = table_rows(record)  # side by side, as `colorize evaluate` prints it
    if config.update_card:
        versions.update_card(model_url, {"metrics": flat, "evaluated_on": {
            "dataset": dataset, "split": config.split,
            "dataset_manifest_sha256": manifest_digest(dataset)}, "evaluation": record})
    logger.info("evaluated %s on %s/%s: %s", card["model_id"], dataset, config.split, flat)
    return record


def _write_images(url: str, ids: list[str], names: dict[str, str], **slices: torch.Tensor) -> None:
    """One PNG per photo and slice (sRGB [B, 3, S, S] each), at the evaluation size."""
    for slice_name in EVAL_SLICES:
        batch = slices[slice_name]
        for index, photo in enumerate(ids):
            data = color.encode_image(color.tensor_to_image(batch[index]), suffix=".png",
                                      quality=100)
            storage.write_bytes(storage.join(url, slice_name, names[photo]), data)


def format_cell(value: dict[str, float] | float | None) -> str:
    """`mean [low, high]`, or the bare value for set metrics (FID), or `-`."""
    if value is None:
        return "-"
    if isinstance(value, dict):
        return f"{value['mean']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"
    return f"{value:.3f}"


def table_rows(record: dict[str, Any]) -> list[dict[str, str]]:
    """One row per metric, one column per role (model, parent, champion, grayscale)."""
    columns = {role: column_title(role, record["subjects"][role])
               for role in ROLES if role in record["subjects"]}
    names = [*PHOTO_METRICS, *[k for k in record["summary"]["model"] if k not in PHOTO_METRICS]]
    rows = []
    for name in names:
        row = {"metric": name}
        for role, title in columns.items():
            row[title] = format_cell(record["summary"].get(role, {}).get(name))
        rows.append(row)
    truth = record["summary"]["truth"][TRUTH_METRIC]
    rows.append({"metric": "colorfulness of the truth",
                 **{title: format_cell(truth) for title in columns.values()}})
    return rows


def column_title(role: str, subject: dict[str, Any]) -> str:
    if role == "grayscale":
        return "grayscale (ab = 0)"
    return f"{role}: {subject['model_id']} ({subject.get('stage') or '?'})"


def format_table(record: dict[str, Any]) -> str:
    """The evaluation as a markdown table (the CLI prints it; the flow makes it an artifact)."""
    rows = table_rows(record)
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row[h] for h in headers) + " |" for row in rows]
    confidence = round(100 * record.get("confidence", EVAL_CONFIDENCE))
    footer = [f"{record['images']} photos of {record['dataset']} ({record['split']}); "
              f"mean [{confidence}% interval]."]
    footer += [f"Note: {note}." for note in record.get("notes", [])]
    return "\n".join(lines + [""] + footer)


def card_report(model: str, *, review: str | None = None, review_url: str | None = None,
                models_root: str | None = None) -> str:
    """Markdown of a model's stored evaluation, with where its review dataset is."""
    card = versions.read_card(model, models_root=models_root)
    if "evaluation" not in card:
        raise ValueError(f"model {card['model_id']}: not evaluated yet")
    lines = [f"# {card['model_id']} ({card.get('stage')})", "", format_table(card["evaluation"])]
    if review:
        link = f"[{review}]({review_url})" if review_url else f"`{review}`"
        lines += ["", f"Review: FiftyOne dataset {link}; `colorize review {card['model_id']}` "
                  "serves it, worst photos first."]
    return "\n".join(lines)

"""`colorize` command line: each subcommand is a thin call into the library (or a flow)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

from colorization import versions
from colorization.constants import (
    COCO_MIRROR_ENV,
    COCO_OFFICIAL_MIRROR,
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_DEVICE,
    DEFAULT_EPOCHS,
    DEFAULT_EVAL_BATCH,
    DEFAULT_EVAL_SPLIT,
    DEFAULT_GAN_MODE,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_INFERENCE_BATCH,
    DEFAULT_INFERENCE_PRECISION,
    DEFAULT_IO_WORKERS,
    DEFAULT_PRECISION,
    DEFAULT_REVIEW_PORT,
    DEFAULT_SAMPLE_SIZE,
    DEFAULT_SEED,
    DEFAULT_SHARD_SIZE,
    DEFAULT_STAGE,
    DEFAULT_VAL_FRACTION,
    EXCLUDE_TAG,
    MAX_INPUT_PIXELS,
    OUTPUT_JPEG_QUALITY,
)
from colorization.devices import DEVICE_CHOICES, PRECISION_CHOICES, check_device_name
from colorization.models import (
    AUTO_GENERATOR,
    DEFAULT_DISCRIMINATOR,
    DISCRIMINATORS,
    GENERATORS,
    ModelSpec,
)
from colorization.shards import SPLITS
from colorization.train import STAGES
from colorization.trainer import GAN_CRITERIA


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def cmd_images(args: argparse.Namespace) -> int:
    from colorization.inference import colorize_paths

    report = colorize_paths(args.paths, out=args.out, model=args.model,
                            batch_size=args.batch_size, device=args.device,
                            precision=args.precision, overwrite=args.overwrite,
                            output_format=args.format, jpeg_quality=args.jpeg_quality,
                            workers=args.workers, render_size=args.render_size,
                            max_pixels=args.max_pixels)
    print(f"wrote {len(report.written)} images to {args.out} in {report.seconds:.1f} s; "
          f"kept {len(report.skipped_existing)} existing; {len(report.failed)} failed")
    for source, error in report.failed.items():
        print(f"  failed: {source}: {error}", file=sys.stderr)
    return 1 if report.failed else 0  # the rest was still done; the status tells a script


def cmd_prepare(args: argparse.Namespace) -> int:
    from colorization.shards import PrepareConfig, prepare_dataset

    config = PrepareConfig(
        source=args.source, output=args.out, seed=args.seed, sample_size=args.sample_size,
        val_fraction=args.val_fraction, image_size=args.image_size,
        shard_size=args.shard_size, exclude=args.exclude, coco_mirror=args.coco_mirror,
        workers=args.workers)
    with _progress_bar() as progress:
        dataset = prepare_dataset(config, progress=progress)
    print(dataset)  # the last line: scripts read the snapshot URL from it
    return 0


# --- Issue 6: progress bars (rich, which Prefect already installs) on stderr. ---
@contextlib.contextmanager
def _progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A callback drawing one bar per phase (count, rate, ETA); silent when not a TTY."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    tasks: dict[str, TaskID] = {}
    with Progress(TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.speed_text}"), TimeRemainingColumn(), console=console,
                  disable=not console.is_terminal) as bar:

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total, speed_text="")
            task = tasks[phase]
            bar.update(task, completed=done, total=max(total, done))
            speed = bar.tasks[task].speed
            bar.update(task, speed_text=f"{speed:.1f}/s" if speed else "")

        yield update


def cmd_train(args: argparse.Namespace) -> int:
    from colorization.torchrun import train_stage_ddp
    from colorization.train import TrainConfig

    config = TrainConfig(stage=args.stage, generator=ModelSpec(args.generator, args.options),
                         discriminator=ModelSpec(args.discriminator), epochs=args.epochs,
                         batch_size=args.batch_size, device=args.device,
                         precision=args.precision, seed=args.seed, lr=args.lr,
                         gan_mode=args.gan_mode, checkpoint_every=args.checkpoint_every,
                         num_workers=args.workers, compile=args.compile)
    # --nproc N > 1: N processes under torchrun, rank 0 reports (colorization.torchrun).
    _print_json(train_stage_ddp(config, nproc=args.nproc, dataset=args.dataset,
                                init_from=args.init_from))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from colorization.evaluate import EvalConfig, evaluate_model, format_table

    record = evaluate_model(args.model, dataset=args.dataset, progress=_progress_line(
        "evaluating"), config=EvalConfig(
            split=args.split, batch_size=args.batch_size, device=args.device,
            precision=args.precision, compare=not args.no_compare,
            fid_weights=args.fid_weights))
    print(format_table(record))
    if args.review:
        from colorization.review import build_model_dataset

        try:
            with contextlib.redirect_stdout(sys.stderr):  # FiftyOne's progress bars
                name = build_model_dataset(args.model)
        except Exception as exc:  # e.g. no MongoDB: the metrics are saved all the same
            print(f"colorize: review dataset not built ({type(exc).__name__}: {exc}); the "
                  "metrics are in the card; --no-review skips it", file=sys.stderr)
            return 1
        model_id = record["subjects"]["model"]["model_id"]
        print(f"\nreview dataset: {name}  (open it: colorize review {model_id})")
    return 0


def _progress_line(label: str) -> Callable[[int, int], None]:
    """A progress callback that rewrites one stderr line: `label: done/total photos`."""

    def show(done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        print(f"\r{label}: {done}/{total} photos", end=end, file=sys.stderr, flush=True)

    return show


def cmd_retrain(args: argparse.Namespace) -> int:
    from flows.retrain import retrain

    _print_json(retrain(source=args.source, sample_size=args.sample_size,
                        coco_mirror=args.coco_mirror, exclude=args.exclude,
                        image_size=args.image_size, generator=args.generator,
                        generator_options=args.options,
                        pretrain_epochs=args.pretrain_epochs, gan_epochs=args.gan_epochs,
                        batch_size=args.batch_size, device=args.device,
                        precision=args.precision, seed=args.seed))
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    champion = versions.champion()
    for card in versions.list_versions():
        mark = "*" if card["model_id"] == champion else " "
        metrics = ", ".join(f"{k}={v}" for k, v in card.get("metrics", {}).items())
        print(f"{mark} {card['model_id']}  {card['generator']['name']}  {metrics}")
    return 0


# --- Issue 9: `colorize models promote` through the gate, `show`, `export` ----------------------
def cmd_models_promote(args: argparse.Namespace) -> int:
    if args.force:  # the gate bypassed, on purpose: recorded as forced with the reason
        versions.promote(args.model_id, reason=args.reason, forced=True)
        print(f"champion is now {args.model_id} (forced: {args.reason})")
        return 0
    from colorization.gate import GateConfig, decide

    decision = decide(args.model_id, dataset=args.dataset, config=GateConfig(
        batch_size=args.batch_size, device=args.device, precision=args.precision))
    if not decision["promoted"] and decision["model_id"] != decision["challenger"]:
        print(f"colorize: refused: {decision['challenger']}: {decision['reason']} (rule: "
              f"{decision['rule']}; --force bypasses the gate)", file=sys.stderr)
        return 1
    print(f"champion is now {decision['model_id']} ({decision['reason']})")
    return 0


def cmd_models_show(args: argparse.Namespace) -> int:
    card = versions.read_card(args.model_id)
    evaluation = card.get("evaluation")
    if isinstance(evaluation, dict) and not args.full:  # per-photo rows: hundreds of lines
        card["evaluation"] = {k: v for k, v in evaluation.items()
                              if k not in ("per_photo", "image_names", "table")}
    card["champion"] = card["model_id"] == versions.champion()
    card["decisions"] = [entry for entry in versions.history()
                         if card["model_id"] in (entry.get("challenger"), entry.get("champion"))]
    _print_json(card)
    return 0


def cmd_models_export(args: argparse.Namespace) -> int:
    from colorization.export import export_model

    print(export_model(args.model_id, export_format=args.format, out=args.out))
    return 0


def _add_models_issue9(models_sub: Any, add: Callable[..., argparse.ArgumentParser],
                       promote: argparse.ArgumentParser) -> None:
    """Issue 9: the gate's options on `promote`; `show` and `export`."""
    from colorization.export import EXPORT_FORMATS

    promote.add_argument("--force", action="store_true",
                         help="bypass the promotion gate; recorded as forced with --reason")
    promote.add_argument("--dataset", help="validation snapshot the gate compares on "
                         "(default: the one the model was evaluated on, else trained on)")
    promote.add_argument("--batch-size", type=int, default=DEFAULT_EVAL_BATCH,
                         help="photos per forward pass when the gate must evaluate")
    _add_compute_options(promote)
    show = add("show", cmd_models_show, "print a version's card (lineage, metrics) and the "
               "gate's decisions about it, as JSON", models_sub)
    show.add_argument("model_id", nargs="?", help="id or version folder "
                      "(default: the champion)")
    show.add_argument("--full", action="store_true",
                      help="keep the evaluation's per-photo rows")
    export = add("export", cmd_models_export, "write a version's generator for serving "
                 "(ONNX: input L/50-1 [N,1,H,W], output ab/110 [N,2,H,W]); prints where",
                 models_sub)
    export.add_argument("model_id", help="id or version folder of the model")
    export.add_argument("--format", choices=sorted(EXPORT_FORMATS), default="onnx",
                        help="export format")
    export.add_argument("--out", help="file or s3:// URL to write "
                        "(default: <model folder>/generator.<format>)")


# --- review and curation (issue 10) ---------------------------------------------------------
def _review_target(args: argparse.Namespace) -> tuple[str, Callable[[], str]]:
    """(FiftyOne dataset name, how to build it) for a model (default: champion) or snapshot."""
    from colorization import review

    if args.dataset and args.model:
        raise ValueError("give a model or --dataset SNAPSHOT, not both")
    if args.dataset:
        from colorization import review_data

        return (review_data.snapshot_dataset_name(args.dataset),
                lambda: review_data.build_snapshot_dataset(args.dataset))
    card = versions.read_card(args.model)
    return (review.model_dataset_name(card["model_id"]),
            lambda: review.build_model_dataset(card["model_id"]))


def cmd_review(args: argparse.Namespace) -> int:
    from colorization import review

    name, build = _review_target(args)
    # FiftyOne writes progress bars to stdout; keep stdout for the URL or the JSON line.
    with contextlib.redirect_stdout(sys.stderr):
        if args.rebuild or not review.exists(name):
            build()
        if args.no_app:
            summary = review.summary(name)
    if args.no_app:
        print(json.dumps(summary))
        return 0
    # A service manager's SIGTERM ends the App like Ctrl-C: the session closes its server.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.redirect_stdout(sys.stderr):
        session = review.launch(name, port=args.port)
    print(f"http://127.0.0.1:{args.port}/", flush=True)
    print(f"FiftyOne App serving {name} (worst first); Ctrl-C stops it", file=sys.stderr)
    try:
        session.wait(-1)
    except KeyboardInterrupt:
        pass
    finally:
        session.close()
    return 0


def cmd_curate_export(args: argparse.Namespace) -> int:
    from colorization import review

    names = None
    if args.dataset or args.model:
        names = [_review_target(args)[0]]
    with contextlib.redirect_stdout(sys.stderr):
        url, ids = review.export_exclusions(names, url=args.to)
    print(f"exported {len(ids)} photo ids tagged {EXCLUDE_TAG!r}", file=sys.stderr)
    print(url)
    return 0


# ---- Bulk colorization (issue 8): `colorize bucket`, inference options --------------------
def cmd_bucket(args: argparse.Namespace) -> int:
    from colorization.bulk import BulkConfig, colorize_bucket
    from colorization.progress import BulkProgress

    config = BulkConfig(batch_size=args.batch_size, workers=args.workers, device=args.device,
                        precision=args.precision, render_size=args.render_size,
                        output_format=args.format, jpeg_quality=args.jpeg_quality,
                        max_pixels=args.max_pixels, retry_failed=args.retry_failed)
    with BulkProgress() as progress:
        report = colorize_bucket(args.source, args.destination, model=args.model,
                                 config=config, on_plan=progress.start,
                                 on_outcome=progress.advance)
    rate = report.done / report.seconds if report.seconds else 0.0
    print(f"model {report.model_id}: done {report.done} ({rate:.1f} images/s), "
          f"skipped {report.skipped} (done before), failed {len(report.failed)}, "
          f"failed before {len(report.failed_before)} (not retried), "
          f"ignored {len(report.ignored)} (not images); {report.seconds:.1f} s")
    for key, error in {**report.failed_before, **report.failed}.items():
        print(f"  failed: {key}: {error}", file=sys.stderr)
    return 0 if report.ok else 1


def _add_inference_options(parser: argparse.ArgumentParser) -> None:
    from colorization.imagefiles import OUTPUT_FORMATS

    parser.add_argument("--model", help="model id or version folder (default: the champion)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_INFERENCE_BATCH,
                        help="photos per forward pass")
    parser.add_argument("--workers", type=int, default=DEFAULT_IO_WORKERS,
                        help="threads that decode ahead of the model (and as many that "
                        "encode behind it)")
    parser.add_argument("--format", choices=sorted(OUTPUT_FORMATS),
                        help="output format (default: the input's own)")
    parser.add_argument("--jpeg-quality", type=int, default=OUTPUT_JPEG_QUALITY,
                        help="quality of JPEG and WebP outputs, 1-100")
    parser.add_argument("--render-size", type=int,
                        help="side the model sees, in pixels (default: its training size)")
    parser.add_argument("--max-pixels", type=int, default=MAX_INPUT_PIXELS,
                        help="refuse larger images from their header, before decoding")
    parser.add_argument("--device", type=_device, default=DEFAULT_DEVICE,
                        metavar="{" + ",".join(DEVICE_CHOICES) + ",cuda:N}",
                        help="where to run; auto is CUDA when present, else the CPU")
    parser.add_argument("--precision", choices=PRECISION_CHOICES,
                        default=DEFAULT_INFERENCE_PRECISION,
                        help="auto is bf16 + channels_last on GPUs and on CPUs with native "
                        "bf16 (measured faster, same colours), else fp32")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none (None) or the help states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or "default:" in text or action.required:
            return text
        return super()._get_help_string(action) or text


def _device(name: str) -> str:
    try:
        return check_device_name(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"num_downs\": 6}'")
    return value


def _add_compute_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=_device, default=DEFAULT_DEVICE,
                        metavar="{" + ",".join(DEVICE_CHOICES) + ",cuda:N}",
                        help="where to run; auto is CUDA when present, else the CPU")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default=DEFAULT_PRECISION,
                        help="numeric precision; auto is mixed precision on CUDA, fp32 on CPU")


def _add_sample_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sample-size", type=int, default=DEFAULT_SAMPLE_SIZE,
                        help="photos to sample (all of them when fewer)")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE,
                        help="side of the square centre crops, in pixels")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", choices=[AUTO_GENERATOR, *sorted(GENERATORS)],
                        default=AUTO_GENERATOR,
                        help="registered generator architecture; auto is the pix2pix U-Net "
                        "built for the image size (unet_128 for 128 px, unet_256 for 256 px); "
                        "resnet18_unet is the ResNet18-encoder U-Net "
                        "(--options '{\"weights\": \"imagenet\" | PATH | URL | \"none\"}')")
    parser.add_argument("--options", type=_json_object, default={},
                        help="JSON options of the generator, e.g. "
                        '\'{"num_downs": 6, "base_channels": 32}\' with --generator unet')
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help="training photos per step")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="seed of sampling, initialisation and shuffling")
    _add_compute_options(parser)


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    # Issue 6: COCO mirrors and the exclusion list.
    parser.add_argument("--coco-mirror",
                        help="COCO mirror for coco:// sources: http(s) base URL, s3:// "
                        f"prefix or folder (default: ${COCO_MIRROR_ENV}, else "
                        f"{COCO_OFFICIAL_MIRROR})")
    parser.add_argument("--exclude",
                        help="file or URL listing photo ids / file names to leave out, one "
                        "per line (default: <home>/curation/exclude.txt when it exists)")


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    """Issue 7: resume, DDP, GAN objective and speed options of `colorize train`."""
    parser.add_argument("--checkpoint-every", type=int, default=DEFAULT_CHECKPOINT_EVERY,
                        help="steps between checkpoints (0: epoch ends only); the same "
                        "command resumes a killed run exactly")
    parser.add_argument("--nproc", type=int, default=1,
                        help="processes under torchrun (DDP: NCCL on GPUs, gloo on CPUs)")
    parser.add_argument("--gan-mode", choices=sorted(GAN_CRITERIA), default=DEFAULT_GAN_MODE,
                        help="adversarial loss of the gan stage (vanilla: BCE; lsgan: MSE)")
    parser.add_argument("--lr", type=float, default=None,
                        help="Adam learning rate (default: 1e-4 to pretrain a pretrained "
                        "resnet18_unet, else 2e-4)")
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader worker processes per training process")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the generator (slow first step, faster after)")


def build_parser() -> argparse.ArgumentParser:
    formatter = _HelpFormatter
    parser = argparse.ArgumentParser(
        prog="colorize", formatter_class=formatter,
        description="Colorize black-and-white photos; prepare data, train, evaluate and "
        "promote models. Storage root: $COLORIZATION_HOME (default ~/.colorization).")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and a traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str,
            parent: Any = sub) -> argparse.ArgumentParser:
        child = parent.add_parser(name, help=help_text, description=help_text,
                                  formatter_class=formatter)
        child.set_defaults(func=func)
        return child

    images = add("images", cmd_images, "colorize image files and folders at full resolution")
    images.add_argument("paths", nargs="+", help="image files or folders (local or s3://)")
    images.add_argument("--out", required=True, help="output folder or s3:// prefix")
    images.add_argument("--overwrite", action="store_true",
                        help="redo outputs that already exist")
    _add_inference_options(images)

    bucket = add("bucket", cmd_bucket, "colorize every image under a prefix into another, "
                 "exactly once (a manifest records each input; reruns do only new work)")
    bucket.add_argument("source", metavar="IN", help="input folder or s3:// prefix (only read)")
    bucket.add_argument("destination", metavar="OUT", help="output folder or s3:// prefix")
    bucket.add_argument("--retry-failed", action="store_true",
                        help="retry inputs recorded as bad files (same file, same model)")
    _add_inference_options(bucket)

    prepare = add("prepare", cmd_prepare, "colour photos -> a Lab-shard dataset snapshot")
    prepare.add_argument("source", help="folder or s3:// prefix of colour photos, or "
                         "coco://<split> (e.g. coco://train2017)")
    prepare.add_argument("--out", help="snapshot URL (default: <home>/datasets/<snapshot id>)")
    prepare.add_argument("--seed", type=int, default=DEFAULT_SEED,
                         help="seed of the sample and the split")
    _add_sample_options(prepare)
    prepare.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                         help="share of the sample held out for validation")
    prepare.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                         help="photos per tar shard")
    _add_source_options(prepare)
    prepare.add_argument("--workers", type=int,
                         help="conversion processes (default: one per CPU)")

    train = add("train", cmd_train, "train one stage on a prepared dataset")
    train.add_argument("dataset", help="URL of a prepared snapshot")
    train.add_argument("--stage", choices=sorted(STAGES), default=DEFAULT_STAGE,
                       help="pretrain: L1 only; gan: adversarial + 100 x L1")
    train.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="passes over the data")
    train.add_argument("--init-from", help="model id whose generator starts this stage "
                       "(default: a freshly initialised generator)")
    train.add_argument("--discriminator", choices=sorted(DISCRIMINATORS),
                       default=DEFAULT_DISCRIMINATOR, help="registered discriminator (gan)")
    _add_model_options(train)
    _add_train_options(train)
    for action in train._actions:  # training's own 'auto' (bf16 on CPUs that have it)
        if action.dest == "precision":
            action.help = ("numeric precision; auto is bf16 + channels_last where the "
                           "processor has bf16 (CPUs with AVX512-BF16/AMX, Ampere+ GPUs), "
                           "fp16 on older GPUs, else fp32")

    evaluate = add("evaluate", cmd_evaluate, "metrics of a model on a dataset split")
    evaluate.add_argument("model", help="model id or version folder")
    evaluate.add_argument("--dataset", required=True, help="URL of a prepared snapshot")
    evaluate.add_argument("--split", choices=SPLITS, default=DEFAULT_EVAL_SPLIT,
                          help="which split of the snapshot")
    evaluate.add_argument("--batch-size", type=int, default=DEFAULT_EVAL_BATCH,
                          help="photos per forward pass")
    # --- evaluation beside baselines, review dataset (issue 10) ---
    evaluate.add_argument("--no-compare", action="store_true",
                          help="skip the parent stage and the champion columns")
    evaluate.add_argument("--fid-weights", help="local torchvision Inception-v3 weights "
                          "file for FID (default: FID skipped, noted in the card)")
    evaluate.add_argument("--review", action=argparse.BooleanOptionalAction, default=True,
                          help="build the FiftyOne review dataset colorization-<model id>")
    _add_compute_options(evaluate)

    retrain = add("retrain", cmd_retrain, "the whole chain as a Prefect flow run")
    retrain.add_argument("source", help="folder or s3:// prefix of colour photos, or "
                         "coco://<split> (e.g. coco://train2017)")
    _add_sample_options(retrain)
    _add_source_options(retrain)
    retrain.add_argument("--pretrain-epochs", type=int, default=DEFAULT_EPOCHS,
                         help="epochs of the L1 stage (0 skips it)")
    retrain.add_argument("--gan-epochs", type=int, default=DEFAULT_EPOCHS,
                         help="epochs of the GAN stage (0 skips it)")
    _add_model_options(retrain)

    # --- review and curation (issue 10) ---
    review = add("review", cmd_review, "open a model's or a snapshot's FiftyOne dataset in "
                 "the App (127.0.0.1), worst photos first")
    review.add_argument("model", nargs="?", help="model id or version folder "
                        "(default: the champion)")
    review.add_argument("--dataset", help="snapshot URL: review every photo it considered "
                        "instead of a model (default: review a model)")
    review.add_argument("--port", type=int, default=DEFAULT_REVIEW_PORT,
                        help="port of the App on 127.0.0.1")
    review.add_argument("--no-app", action="store_true",
                        help="print a one-line JSON summary of the dataset instead")
    review.add_argument("--rebuild", action="store_true",
                        help="rebuild the dataset first (exclude tags are kept)")
    curate = sub.add_parser("curate", help="curation: export reviewers' exclude tags",
                            description="curation: export reviewers' exclude tags",
                            formatter_class=formatter)
    curate_sub = curate.add_subparsers(dest="curate_command", required=True, metavar="COMMAND")
    export = add("export", cmd_curate_export, "merge the photo ids tagged exclude into the "
                 "exclusion list and print its URL", curate_sub)
    export.add_argument("model", nargs="?", help="model id or version folder whose review "
                        "dataset to export (default: every review dataset of this storage root)")
    export.add_argument("--dataset", help="snapshot URL whose curation dataset to export "
                        "(default: see MODEL)")
    export.add_argument("--to", help="exclusion list URL "
                        "(default: <home>/curation/exclude.txt)")

    models = sub.add_parser("models", help="list, show, promote and export model versions",
                            description="list, show, promote and export model versions",
                            formatter_class=formatter)
    models_sub = models.add_subparsers(dest="models_command", required=True,
                                       metavar="COMMAND")
    add("list", cmd_models_list, "list versions; * marks the champion", models_sub)
    promote = add("promote", cmd_models_promote, "make a version the champion if the "
                  "promotion gate finds it no worse than the champion (exit 1 when refused)",
                  models_sub)
    promote.add_argument("model_id", help="id of the version to promote")
    promote.add_argument("--reason", default="promoted by hand",
                         help="recorded in the champion's history with --force (the gate "
                         "records its own)")
    _add_models_issue9(models_sub, add, promote)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (OSError, ValueError) as exc:
        # Bad input or storage: one line naming it; -v shows where it came from.
        if args.verbose:
            raise
        print(f"colorize: error: {_describe(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("colorize: interrupted", file=sys.stderr)
        return 130


def _describe(exc: BaseException) -> str:
    """An OSError's filename is the most useful part of its message; keep it in front."""
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())

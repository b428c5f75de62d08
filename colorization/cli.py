"""`colorize` command line: each subcommand is a thin call into the library (or a flow)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable
from typing import Any

from colorization.cli_models import add_models_commands, add_review_commands
from colorization.cli_options import (
    HelpFormatter,
    add_compute_options,
    add_inference_options,
    add_model_options,
    add_sample_options,
    add_source_options,
    add_train_options,
    print_json,
    progress_bar,
    progress_line,
)
from colorization.constants import (
    DEFAULT_EPOCHS,
    DEFAULT_EVAL_BATCH,
    DEFAULT_EVAL_SPLIT,
    DEFAULT_SEED,
    DEFAULT_SHARD_SIZE,
    DEFAULT_STAGE,
    DEFAULT_VAL_FRACTION,
)
from colorization.models import (
    DEFAULT_DISCRIMINATOR,
    DISCRIMINATORS,
    ModelSpec,
)
from colorization.shards import SPLITS
from colorization.train import STAGES


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
    with progress_bar() as progress:
        dataset = prepare_dataset(config, progress=progress)
    print(dataset)  # the last line: scripts read the snapshot URL from it
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from colorization.torchrun import train_stage_ddp
    from colorization.train import TrainConfig

    config = TrainConfig(stage=args.stage, generator=ModelSpec(args.generator, args.options),
                         discriminator=ModelSpec(args.discriminator), epochs=args.epochs,
                         batch_size=args.batch_size, device=args.device,
                         precision=args.precision, seed=args.seed, lr=args.lr,
                         lr_decay_epochs=args.lr_decay_epochs, ema_decay=args.ema_decay,
                         gan_mode=args.gan_mode, checkpoint_every=args.checkpoint_every,
                         num_workers=args.workers, compile=args.compile)
    # --nproc N > 1: N processes under torchrun, rank 0 reports (colorization.torchrun).
    print_json(train_stage_ddp(config, nproc=args.nproc, dataset=args.dataset,
                                init_from=args.init_from))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from colorization.evaluate import EvalConfig, evaluate_model, format_table

    record = evaluate_model(args.model, dataset=args.dataset, progress=progress_line(
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


def cmd_retrain(args: argparse.Namespace) -> int:
    from flows.retrain import retrain

    print_json(retrain(source=args.source, sample_size=args.sample_size,
                        coco_mirror=args.coco_mirror, exclude=args.exclude,
                        image_size=args.image_size, generator=args.generator,
                        generator_options=args.options,
                        pretrain_epochs=args.pretrain_epochs, gan_epochs=args.gan_epochs,
                        batch_size=args.batch_size, device=args.device,
                        precision=args.precision, seed=args.seed))
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


def build_parser() -> argparse.ArgumentParser:
    formatter = HelpFormatter
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
    add_inference_options(images)

    bucket = add("bucket", cmd_bucket, "colorize every image under a prefix into another, "
                 "exactly once (a manifest records each input; reruns do only new work)")
    bucket.add_argument("source", metavar="IN", help="input folder or s3:// prefix (only read)")
    bucket.add_argument("destination", metavar="OUT", help="output folder or s3:// prefix")
    bucket.add_argument("--retry-failed", action="store_true",
                        help="retry inputs recorded as bad files (same file, same model)")
    add_inference_options(bucket)

    prepare = add("prepare", cmd_prepare, "colour photos -> a Lab-shard dataset snapshot")
    prepare.add_argument("source", help="folder or s3:// prefix of colour photos, or "
                         "coco://<split> (e.g. coco://train2017)")
    prepare.add_argument("--out", help="snapshot URL (default: <home>/datasets/<snapshot id>)")
    prepare.add_argument("--seed", type=int, default=DEFAULT_SEED,
                         help="seed of the sample and the split")
    add_sample_options(prepare)
    prepare.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION,
                         help="share of the sample held out for validation")
    prepare.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                         help="photos per tar shard")
    add_source_options(prepare)
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
    add_model_options(train)
    add_train_options(train)
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
    add_compute_options(evaluate)

    retrain = add("retrain", cmd_retrain, "the whole chain as a Prefect flow run")
    retrain.add_argument("source", help="folder or s3:// prefix of colour photos, or "
                         "coco://<split> (e.g. coco://train2017)")
    add_sample_options(retrain)
    add_source_options(retrain)
    retrain.add_argument("--pretrain-epochs", type=int, default=DEFAULT_EPOCHS,
                         help="epochs of the L1 stage (0 skips it)")
    retrain.add_argument("--gan-epochs", type=int, default=DEFAULT_EPOCHS,
                         help="epochs of the GAN stage (0 skips it)")
    add_model_options(retrain)

    add_review_commands(sub, add, formatter)  # review, curate (issue 10)
    add_models_commands(sub, add, formatter)  # models (issue 9)
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

"""`colorize` command line: each subcommand is a thin call into the library (or a flow)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from colorization import registry
from colorization.constants import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_INFERENCE_BATCH,
    DEFAULT_SAMPLE_SIZE,
    DEFAULT_SEED,
    DEFAULT_SHARD_SIZE,
    DEFAULT_VAL_FRACTION,
)
from colorization.models import DEFAULT_GENERATOR, ModelSpec


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


def cmd_images(args: argparse.Namespace) -> int:
    from colorization.inference import colorize_paths

    report = colorize_paths(args.paths, out=args.out, model=args.model,
                            batch_size=args.batch_size, device=args.device,
                            overwrite=args.overwrite)
    print(f"wrote {len(report.written)} images to {args.out} in {report.seconds:.1f} s; "
          f"kept {len(report.skipped_existing)} existing; {len(report.failed)} failed")
    for source, error in report.failed.items():
        print(f"  failed: {source}: {error}", file=sys.stderr)
    return 1 if report.failed else 0  # the rest was still done; the status tells a script


def cmd_prepare(args: argparse.Namespace) -> int:
    from colorization.shards import PrepareConfig, prepare_dataset

    print(prepare_dataset(PrepareConfig(
        source=args.source, output=args.out, seed=args.seed, sample_size=args.sample_size,
        val_fraction=args.val_fraction, image_size=args.image_size,
        shard_size=args.shard_size)))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from colorization.train import TrainConfig, train_stage

    config = TrainConfig(stage=args.stage, generator=ModelSpec(args.generator,
                                                               json.loads(args.options)),
                         epochs=args.epochs, batch_size=args.batch_size, device=args.device,
                         seed=args.seed)
    _print_json(train_stage(config, dataset=args.dataset, init_from=args.init_from))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from colorization.evaluate import EvalConfig, evaluate_model

    _print_json(evaluate_model(args.model, dataset=args.dataset,
                               config=EvalConfig(split=args.split, device=args.device)))
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from flows.retrain import retrain

    _print_json(retrain(source=args.source, sample_size=args.sample_size,
                        image_size=args.image_size, generator=args.generator,
                        generator_options=json.loads(args.options),
                        pretrain_epochs=args.pretrain_epochs, gan_epochs=args.gan_epochs,
                        batch_size=args.batch_size, device=args.device, seed=args.seed))
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    champion = registry.champion()
    for card in registry.list_versions():
        mark = "*" if card["model_id"] == champion else " "
        metrics = ", ".join(f"{k}={v}" for k, v in card.get("metrics", {}).items())
        print(f"{mark} {card['model_id']}  {card['generator']['name']}  {metrics}")
    return 0


def cmd_models_promote(args: argparse.Namespace) -> int:
    registry.promote(args.model_id, reason="promoted by hand")
    print(f"champion is now {args.model_id}")
    return 0


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", default=DEFAULT_GENERATOR, help="registered name")
    parser.add_argument("--options", default="{}",
                        help='JSON overrides, e.g. \'{"num_downs": 6, "base_channels": 32}\'')
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="colorize",
        description="Colorize black-and-white photos; prepare data, train, evaluate and "
        "promote models. Storage root: $COLORIZATION_HOME (default ~/.colorization).")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {}

    def add(name: str, func: Callable[[argparse.Namespace], int], help_text: str,
            parent: Any = sub) -> argparse.ArgumentParser:
        child = parent.add_parser(name, help=help_text, description=help_text)
        child.set_defaults(func=func)
        commands[name] = func
        child.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
        return child

    images = add("images", cmd_images, "colorize image files and folders at full resolution")
    images.add_argument("paths", nargs="+", help="files or folders (local or s3://)")
    images.add_argument("--out", required=True, help="output folder or s3:// prefix")
    images.add_argument("--model", help="model id or folder; default: the promoted one")
    images.add_argument("--batch-size", type=int, default=DEFAULT_INFERENCE_BATCH)
    images.add_argument("--overwrite", action="store_true", help="redo existing outputs")

    prepare = add("prepare", cmd_prepare, "colour photos -> a Lab-shard dataset snapshot")
    prepare.add_argument("source", help="folder or s3:// prefix of colour photos")
    prepare.add_argument("--out", help="snapshot URL; default under COLORIZATION_HOME")
    prepare.add_argument("--seed", type=int, default=DEFAULT_SEED)
    prepare.add_argument("--sample-size", type=int, default=DEFAULT_SAMPLE_SIZE)
    prepare.add_argument("--val-fraction", type=float, default=DEFAULT_VAL_FRACTION)
    prepare.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    prepare.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE)

    train = add("train", cmd_train, "train one stage on a prepared dataset")
    train.add_argument("dataset", help="URL of a prepared snapshot")
    train.add_argument("--stage", default="pretrain", help="pretrain or gan")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--init-from", help="model id whose generator starts this stage")
    _add_model_options(train)

    evaluate = add("evaluate", cmd_evaluate, "metrics of a model on a dataset split")
    evaluate.add_argument("model", help="model id or folder")
    evaluate.add_argument("--dataset", required=True)
    evaluate.add_argument("--split", default="val")

    retrain = add("retrain", cmd_retrain, "the whole chain as a Prefect flow run")
    retrain.add_argument("source", help="folder or s3:// prefix of colour photos")
    retrain.add_argument("--sample-size", type=int, default=DEFAULT_SAMPLE_SIZE)
    retrain.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    retrain.add_argument("--pretrain-epochs", type=int, default=10)
    retrain.add_argument("--gan-epochs", type=int, default=10)
    _add_model_options(retrain)

    models = sub.add_parser("models", help="list and promote model versions")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    add("list", cmd_models_list, "list versions; * marks the champion", models_sub)
    promote = add("promote", cmd_models_promote, "make a version the champion", models_sub)
    promote.add_argument("model_id")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"colorize: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

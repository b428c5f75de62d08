"""`colorize models ...` (versions, the promotion gate, export) and `colorize review` /
`colorize curate` (FiftyOne review and curation): commands and their parsers."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Callable
from typing import Any

from colorization import versions
from colorization.cli_options import (
    add_compute_options,
    print_json,
)
from colorization.constants import (
    DEFAULT_EVAL_BATCH,
    DEFAULT_REVIEW_PORT,
    EXCLUDE_TAG,
)

AddCommand = Callable[..., argparse.ArgumentParser]


def cmd_models_list(args: argparse.Namespace) -> int:
    champion = versions.champion()
    for card in versions.list_versions():
        mark = "*" if card["model_id"] == champion else " "
        metrics = ", ".join(f"{k}={v}" for k, v in card.get("metrics", {}).items())
        print(f"{mark} {card['model_id']}  {card['generator']['name']}  {metrics}")
    return 0


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
    print_json(card)
    return 0


def cmd_models_export(args: argparse.Namespace) -> int:
    from colorization.export import export_model

    print(export_model(args.model_id, export_format=args.format, out=args.out))
    return 0


def _add_gate_show_export(models_sub: Any, add: Callable[..., argparse.ArgumentParser],
                          promote: argparse.ArgumentParser) -> None:
    """Issue 9: the gate's options on `promote`; `show` and `export`."""
    from colorization.export import EXPORT_FORMATS

    promote.add_argument("--force", action="store_true",
                         help="bypass the promotion gate; recorded as forced with --reason")
    promote.add_argument("--dataset", help="validation snapshot the gate compares on "
                         "(default: the one the model was evaluated on, else trained on)")
    promote.add_argument("--batch-size", type=int, default=DEFAULT_EVAL_BATCH,
                         help="photos per forward pass when the gate must evaluate")
    add_compute_options(promote)
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
    # SIGINT too, explicitly: a shell starts background jobs with SIGINT ignored, and Python
    # then installs no handler of its own, so Ctrl-C (or `kill -INT`) would never stop it.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
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


def add_review_commands(sub: Any, add: AddCommand, formatter: type) -> None:
    """`colorize review` and `colorize curate export` (issue 10)."""
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


def add_models_commands(sub: Any, add: AddCommand, formatter: type) -> None:
    """`colorize models list|show|promote|export` (issue 9)."""
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
    _add_gate_show_export(models_sub, add, promote)

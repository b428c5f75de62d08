"""Options and helpers shared by the `colorize` subcommands (parsers, progress, JSON)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

from colorization.constants import (
    COCO_MIRROR_ENV,
    COCO_OFFICIAL_MIRROR,
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHECKPOINT_EVERY,
    DEFAULT_DEVICE,
    DEFAULT_GAN_MODE,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_INFERENCE_BATCH,
    DEFAULT_INFERENCE_PRECISION,
    DEFAULT_IO_WORKERS,
    DEFAULT_PRECISION,
    DEFAULT_SAMPLE_SIZE,
    DEFAULT_SEED,
    MAX_INPUT_PIXELS,
    OUTPUT_JPEG_QUALITY,
)
from colorization.devices import DEVICE_CHOICES, PRECISION_CHOICES, check_device_name
from colorization.models import (
    AUTO_GENERATOR,
    GENERATORS,
)
from colorization.trainer import GAN_CRITERIA


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2))


@contextlib.contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
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


def progress_line(label: str) -> Callable[[int, int], None]:
    """A progress callback that rewrites one stderr line: `label: done/total photos`."""

    def show(done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        print(f"\r{label}: {done}/{total} photos", end=end, file=sys.stderr, flush=True)

    return show


def add_inference_options(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--device", type=device_name, default=DEFAULT_DEVICE,
                        metavar="{" + ",".join(DEVICE_CHOICES) + ",cuda:N}",
                        help="where to run; auto is CUDA when present, else the CPU")
    parser.add_argument("--precision", choices=PRECISION_CHOICES,
                        default=DEFAULT_INFERENCE_PRECISION,
                        help="auto is bf16 + channels_last on GPUs and on CPUs with native "
                        "bf16 (measured faster, same colours), else fp32")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none (None) or the help states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or "default:" in text or action.required:
            return text
        return super()._get_help_string(action) or text


def device_name(name: str) -> str:
    try:
        return check_device_name(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"num_downs\": 6}'")
    return value


def add_compute_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=device_name, default=DEFAULT_DEVICE,
                        metavar="{" + ",".join(DEVICE_CHOICES) + ",cuda:N}",
                        help="where to run; auto is CUDA when present, else the CPU")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default=DEFAULT_PRECISION,
                        help="numeric precision; auto is mixed precision on CUDA, fp32 on CPU")


def add_sample_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sample-size", type=int, default=DEFAULT_SAMPLE_SIZE,
                        help="photos to sample (all of them when fewer)")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE,
                        help="side of the square centre crops, in pixels")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generator", choices=[AUTO_GENERATOR, *sorted(GENERATORS)],
                        default=AUTO_GENERATOR,
                        help="registered generator architecture; auto is the pix2pix U-Net "
                        "built for the image size (unet_128 for 128 px, unet_256 for 256 px); "
                        "resnet18_unet is the ResNet18-encoder U-Net "
                        "(--options '{\"weights\": \"imagenet\" | PATH | URL | \"none\"}')")
    parser.add_argument("--options", type=json_object, default={},
                        help="JSON options of the generator, e.g. "
                        '\'{"num_downs": 6, "base_channels": 32}\' with --generator unet')
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help="training photos per step")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="seed of sampling, initialisation and shuffling")
    add_compute_options(parser)


def add_source_options(parser: argparse.ArgumentParser) -> None:
    # Issue 6: COCO mirrors and the exclusion list.
    parser.add_argument("--coco-mirror",
                        help="COCO mirror for coco:// sources: http(s) base URL, s3:// "
                        f"prefix or folder (default: ${COCO_MIRROR_ENV}, else "
                        f"{COCO_OFFICIAL_MIRROR})")
    parser.add_argument("--exclude",
                        help="file or URL listing photo ids / file names to leave out, one "
                        "per line (default: <home>/curation/exclude.txt when it exists)")


def add_train_options(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--lr-decay-epochs", type=int, default=0,
                        help="pix2pix's linear decay: the rate falls linearly over the last "
                        "N epochs (0: constant)")
    parser.add_argument("--ema-decay", type=float, default=0.0,
                        help="save an exponential moving average of the generator's weights "
                        "with this decay per step, e.g. 0.99 (0: off)")
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader worker processes per training process")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the generator (slow first step, faster after)")

"""Colorize photos at full resolution: the engine shared by `colorize images` and `bulk`.

The generator sees the photo's L channel with its long side resized to the render size S
and edge-padded to S x S (so photos of any shape batch together, undistorted); its ab
[2, S, S] is cropped to the content, upsampled back to the photo's H x W and recombined with
the original, full-resolution L, so edges stay as sharp as the input.

`run_jobs` pipelines the work: threads read and decode ahead of the model and encode and
write behind it (codecs, numpy and storage release the GIL), so the model never waits on
I/O; at most a few batches are in flight, so memory stays flat over any number of photos.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TypeVar

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn

from colorization import color, imagefiles, storage, versions
from colorization.constants import (
    BULK_IMAGE_SUFFIXES,
    DEFAULT_DEVICE,
    DEFAULT_INFERENCE_BATCH,
    DEFAULT_INFERENCE_PRECISION,
    DEFAULT_IO_WORKERS,
    MAX_INPUT_PIXELS,
    OUTPUT_JPEG_QUALITY,
)
from colorization.devices import Precision, select_device, select_inference_policy

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A decoded photo ready for the model: full-resolution L* [H, W] (float32, 0-100), the
    normalised model input [S, S] and the (height, width) of its content inside that square."""

    lightness: np.ndarray
    small: np.ndarray
    content: tuple[int, int]
    alpha: np.ndarray | None


class Colorizer:
    """A loaded generator that turns pictures (any mode, any size) into colour ones."""

    def __init__(self, generator: nn.Module, *, image_size: int, device: torch.device,
                 precision: Precision | None = None, channels_last: bool | None = None,
                 render_size: int | None = None, model_id: str = "unknown"):
        policy = select_inference_policy(device=device)
        self.precision = precision or policy.precision
        self.channels_last = policy.channels_last if channels_last is None else channels_last
        self.memory_format = (torch.channels_last if self.channels_last
                              else torch.contiguous_format)
        # Reduced precision: the weights themselves are cast once (bf16 / fp16), rather than
        # by autocast on every forward pass; measured faster on CPUs (README).
        self.dtype = self.precision.autocast_dtype or torch.float32
        self.generator = generator.eval().to(self.dtype).to(memory_format=self.memory_format)
        self.image_size, self.device, self.model_id = image_size, device, model_id
        self.render_size = render_size or image_size

    @classmethod
    def load(cls, model: str | None = None, *, device: str = DEFAULT_DEVICE,
             precision: str = DEFAULT_INFERENCE_PRECISION, models_root: str | None = None,
             render_size: int | None = None) -> Colorizer:
        """From a model id, a version folder/URL, or None for the promoted champion."""
        torch_device = select_device(device)
        generator, card = versions.load_generator(model, models_root=models_root,
                                                  device=torch_device)
        policy = select_inference_policy(precision, device=torch_device)
        logger.info("loaded model %s (%s%s)", card["model_id"], policy.precision.name,
                    ", channels_last" if policy.channels_last else "")
        return cls(generator, image_size=card["image_size"], device=torch_device,
                   precision=policy.precision, channels_last=policy.channels_last,
                   render_size=render_size, model_id=card["model_id"])

    def prepare(self, picture: imagefiles.DecodedImage) -> Prepared:
        """L* at full size and the padded S x S model input; numpy only, safe in threads."""
        lightness = color.srgb8_to_lightness(picture.pixels)  # [H, W]
        height, width = lightness.shape
        side = self.render_size
        scale = side / max(height, width)
        content = (max(1, round(height * scale)), max(1, round(width * scale)))
        # Pillow's bilinear filter widens its support when shrinking: antialiased.
        small = np.asarray(Image.fromarray(lightness).resize(
            (content[1], content[0]), Image.Resampling.BILINEAR))
        small = small / color.L_CENTER - 1.0  # [h, w] in [-1, 1], as color.normalize_l
        small = np.pad(small, ((0, side - content[0]), (0, side - content[1])), mode="edge")
        return Prepared(lightness, small.astype(np.float32), content, picture.alpha)

    @torch.inference_mode()
    def predict(self, prepared: list[Prepared]) -> np.ndarray:
        """Normalised ab [B, 2, S, S] (float32) for a batch of prepared photos."""
        batch = torch.from_numpy(np.stack([p.small for p in prepared]))[:, None]  # [B,1,S,S]
        batch = batch.to(self.device, self.dtype).contiguous(memory_format=self.memory_format)
        ab = self.generator(batch)  # [B, 2, S, S]
        return ab.float().cpu().numpy()

    def finish(self, prepared: Prepared, ab_small: np.ndarray) -> np.ndarray:
        """The photo's own L* with the predicted ab upsampled to H x W -> uint8 sRGB [H, W, 3]."""
        height, width = prepared.lightness.shape
        content_h, content_w = prepared.content
        ab = np.clip(ab_small[:, :content_h, :content_w], -1.0, 1.0) * color.AB_SCALE
        # Bilinear upsampling of both planes at once: [h, w, 2] -> [H, W, 2] -> 2 x [H, W].
        full_ab = cv2.split(cv2.resize(np.ascontiguousarray(ab.transpose(1, 2, 0)),
                                       (width, height), interpolation=cv2.INTER_LINEAR))
        return color.lab_to_srgb8(prepared.lightness, full_ab)

    def colorize(self, images: list[Image.Image]) -> list[Image.Image]:
        """Colorize a batch of PIL images; each output is RGB at its input's size."""
        if not images:
            return []
        prepared = [self.prepare(imagefiles.DecodedImage(
            np.asarray(img.convert("RGB")), None)) for img in images]
        ab = self.predict(prepared)
        return [Image.fromarray(self.finish(p, ab[i]))
                for i, p in enumerate(prepared)]


# ---- The pipelined engine ------------------------------------------------------------------
@dataclass(frozen=True)
class EngineConfig:
    """How `run_jobs` batches and overlaps the work."""

    batch_size: int = DEFAULT_INFERENCE_BATCH
    workers: int = DEFAULT_IO_WORKERS  # decoding threads, and as many encoding threads
    jpeg_quality: int = OUTPUT_JPEG_QUALITY
    max_pixels: int = MAX_INPUT_PIXELS

    def __post_init__(self) -> None:
        for name in ("batch_size", "workers", "max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg quality must be in 1-100, got {self.jpeg_quality}")


@dataclass(frozen=True)
class Job:
    """One photo to colorize: where to read it and where to write the result."""

    source: str
    target: str


@dataclass(frozen=True)
class Outcome:
    """What became of a job: `error` is None when the output was written. `bad_input` marks
    failures of the file itself (not an image, truncated, too big), which a retry of the
    same file cannot fix, as opposed to storage or runtime failures."""

    job: Job
    error: str | None
    bad_input: bool
    seconds: float


_T = TypeVar("_T")


class _Failed(Exception):
    def __init__(self, message: str, *, bad_input: bool):
        super().__init__(message)
        self.bad_input = bad_input


def _guard(step: Callable[[], _T], job: Job, what: str) -> _T:
    """Runs `step`, turning any failure into a _Failed that names the file and the reason."""
    try:
        return step()
    except _Failed:
        raise
    except ValueError as exc:  # the bytes are no usable image (message names the file)
        raise _Failed(str(exc), bad_input=True) from exc
    except OSError as exc:
        raise _Failed(f"cannot {what}: {exc}", bad_input=False) from exc
    except Exception as exc:  # noqa: BLE001 - a failure is a record; the run goes on
        logger.exception("%s: unexpected failure", job.source)
        raise _Failed(f"{type(exc).__name__}: {exc}", bad_input=False) from exc


def run_jobs(jobs: Iterable[Job], colorizer: Colorizer, *, config: EngineConfig,
             on_outcome: Callable[[Outcome], None]) -> None:
    """Colorize every job, calling `on_outcome` (in this thread) as each one ends.

    Failures never stop the run: each becomes an Outcome with its reason. Inputs are only
    read; each output is written whole (storage writes are atomic) or not at all.
    """
    started: dict[Job, float] = {}

    def load(job: Job) -> Prepared:
        started[job] = time.monotonic()
        data = _guard(lambda: storage.read_bytes(job.source), job, f"read {job.source}")
        picture = _guard(lambda: imagefiles.decode(
            data, name=job.source, max_pixels=config.max_pixels), job, "decode")
        return _guard(lambda: colorizer.prepare(picture), job, "prepare")

    def save(job: Job, prepared: Prepared, ab_small: np.ndarray) -> None:
        pixels = _guard(lambda: colorizer.finish(prepared, ab_small), job, "finish")
        data = _guard(lambda: imagefiles.encode(
            pixels, alpha=prepared.alpha, suffix=PurePosixPath(job.target).suffix,
            quality=config.jpeg_quality, name=job.target), job, "encode")
        _guard(lambda: storage.write_bytes(job.target, data), job, f"write {job.target}")

    def report(job: Job, exc: BaseException | None) -> None:
        seconds = round(time.monotonic() - started.pop(job, time.monotonic()), 3)
        if exc is None:
            on_outcome(Outcome(job, None, False, seconds))
            return
        bad = isinstance(exc, _Failed) and exc.bad_input
        logger.warning("failed: %s", exc)
        on_outcome(Outcome(job, str(exc), bad, seconds))

    lookahead = 2 * config.batch_size + config.workers
    pending: deque[tuple[Job, Future[Prepared]]] = deque()
    saving: dict[Future[None], Job] = {}
    todo = iter(jobs)

    def drain(keep: int) -> None:
        while saving:
            done = [f for f in saving if f.done()]
            if not done and len(saving) <= keep:
                return
            if not done:
                done = list(wait(saving, return_when=FIRST_COMPLETED).done)
            for future in done:
                report(saving.pop(future), future.exception())

    with ThreadPoolExecutor(config.workers, thread_name_prefix="decode") as loaders, \
            ThreadPoolExecutor(config.workers, thread_name_prefix="encode") as savers:

        def fill() -> None:
            while len(pending) < lookahead and (job := next(todo, None)) is not None:
                pending.append((job, loaders.submit(load, job)))

        fill()
        batch: list[tuple[Job, Prepared]] = []
        while pending:
            job, future = pending.popleft()
            fill()
            if future.exception() is not None:
                report(job, future.exception())
            else:
                batch.append((job, future.result()))
            if batch and (len(batch) == config.batch_size or not pending):
                try:
                    ab = colorizer.predict([prepared for _, prepared in batch])
                except RuntimeError as exc:  # e.g. out of memory: these fail, others go on
                    logger.exception("model failed on a batch of %d", len(batch))
                    for failed_job, _ in batch:
                        report(failed_job, _Failed(f"model failed: {exc}", bad_input=False))
                else:
                    for index, (done_job, prepared) in enumerate(batch):
                        saving[savers.submit(save, done_job, prepared, ab[index])] = done_job
                batch = []
                drain(keep=lookahead)
        drain(keep=0)


# ---- `colorize images` ---------------------------------------------------------------------
@dataclass
class ColorizeReport:
    """What a `colorize_paths` call did."""

    written: list[str] = field(default_factory=list)
    skipped_existing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # input URL -> error
    seconds: float = 0.0


def output_name(name: str, output_format: str | None) -> str:
    """The output's key or file name: the input's, with the forced format's suffix if any."""
    if output_format is None:
        return name
    fmt = imagefiles.OUTPUT_FORMATS.get(output_format)
    if fmt is None:
        raise ValueError(f"unknown output format {output_format!r}; use one of "
                         f"{', '.join(imagefiles.OUTPUT_FORMATS)}")
    return str(PurePosixPath(name).with_suffix(fmt.suffix))


def plan_outputs(inputs: list[str], out: str, *,
                 output_format: str | None = None) -> list[tuple[str, str]]:
    """(input, output) URL pairs: folders keep their relative layout, files go flat.

    Raises ValueError naming the input when a file is not an image or a folder holds none,
    and FileNotFoundError when an input does not exist.
    """
    pairs = []
    for item in inputs:
        if storage.exists(item):  # a file (local) or an object (S3)
            if not item.lower().endswith(BULK_IMAGE_SUFFIXES):
                raise ValueError(f"{item}: not an image file (expected {_suffix_list()})")
            name = PurePosixPath(item.rstrip("/")).name
            pairs.append((item, storage.join(out, output_name(name, output_format))))
            continue
        urls = storage.list_files(item, suffixes=BULK_IMAGE_SUFFIXES)
        if not urls:
            raise ValueError(f"{item}: no image files found (looked for {_suffix_list()})")
        pairs.extend((url, storage.join(out, output_name(storage.relative_key(url, item),
                                                         output_format))) for url in urls)
    return pairs


def _suffix_list() -> str:
    return ", ".join(BULK_IMAGE_SUFFIXES)


def colorize_paths(
    inputs: list[str], *, out: str, model: str | None = None,
    batch_size: int = DEFAULT_INFERENCE_BATCH, device: str = DEFAULT_DEVICE,
    precision: str = DEFAULT_INFERENCE_PRECISION, overwrite: bool = False,
    models_root: str | None = None, output_format: str | None = None,
    jpeg_quality: int = OUTPUT_JPEG_QUALITY, workers: int = DEFAULT_IO_WORKERS,
    render_size: int | None = None, max_pixels: int = MAX_INPUT_PIXELS,
) -> ColorizeReport:
    """Colorize image files and folders (local or s3://) into `out`.

    Broken images are reported in the result and skipped; existing outputs are kept unless
    `overwrite`, so an interrupted call resumes. Inputs are only read.
    """
    started = time.monotonic()
    config = EngineConfig(batch_size=batch_size, workers=workers, jpeg_quality=jpeg_quality,
                          max_pixels=max_pixels)
    pairs = plan_outputs(inputs, out, output_format=output_format)
    report = ColorizeReport()
    todo = []
    for source, target in pairs:
        if not overwrite and storage.exists(target):
            report.skipped_existing.append(target)
        else:
            todo.append(Job(source, target))
    if todo:
        colorizer = Colorizer.load(model, device=device, precision=precision,
                                   models_root=models_root, render_size=render_size)

        def record(outcome: Outcome) -> None:
            if outcome.error is None:
                report.written.append(outcome.job.target)
            else:
                report.failed[outcome.job.source] = outcome.error
            done = len(report.written) + len(report.failed)
            if done % (10 * batch_size) == 0 or done == len(todo):
                logger.info("colorized %d/%d images", done, len(todo))

        run_jobs(todo, colorizer, config=config, on_outcome=record)
    report.written.sort()
    report.seconds = round(time.monotonic() - started, 3)
    return report

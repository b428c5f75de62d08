"""Where work runs and in what precision: one choice shared by training, evaluation and inference.

`select_device("auto")` is CUDA when present, else the CPU. `select_precision("auto", device)`
is mixed precision on CUDA (bf16 where the GPU supports it, else fp16 with a GradScaler)
and fp32 on the CPU; "fp32", "bf16" and "fp16" force one. Training's 'auto'
(`select_training_precision`) is also bf16 on CPUs with native bf16.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from colorization.constants import (
    DEFAULT_DEVICE,
    DEFAULT_INFERENCE_PRECISION,
    DEFAULT_PRECISION,
)

logger = logging.getLogger(__name__)

# What `--device` accepts: these names, or "cuda:N" for one GPU of several.
DEVICE_CHOICES = ("auto", "cpu", "cuda")
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Precision:
    """A numeric precision: the autocast dtype (None: plain fp32) and whether fp16's
    GradScaler is needed to keep small gradients from underflowing."""

    name: str
    autocast_dtype: torch.dtype | None
    needs_grad_scaler: bool


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision("fp32", None, False),
    "bf16": Precision("bf16", torch.bfloat16, False),
    "fp16": Precision("fp16", torch.float16, True),
}
PRECISION_CHOICES = ("auto", *PRECISIONS)


def check_device_name(name: str) -> str:
    """`name` when it is a device `--device` accepts; ValueError naming it otherwise."""
    if not _DEVICE_PATTERN.match(name):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    return name


def select_device(name: str = DEFAULT_DEVICE) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cpu', 'cuda', 'cuda:N' as named."""
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for, but no CUDA GPU is available")
    return torch.device(name)


@functools.cache
def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX)."""
    try:
        # Private API (torch 2.x): oneDNN's own check. Fall back to the kernel's CPU flags.
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        pass
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def supports_bf16(device: torch.device) -> bool:
    """Whether `device` runs bf16 natively (Ampere or newer GPUs; CPUs with AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_supports_bf16()
    return False


def select_precision(name: str = DEFAULT_PRECISION, *, device: torch.device) -> Precision:
    """The precision to run in on `device`; see the module docstring for 'auto'."""
    if name == "auto":
        if device.type == "cuda":
            return PRECISIONS["bf16" if supports_bf16(device) else "fp16"]
        return PRECISIONS["fp32"]
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; use one of {', '.join(PRECISION_CHOICES)}")
    if name == "bf16" and not supports_bf16(device):
        logger.warning("bf16 was asked for, but %s has no native bf16: it will be slow", device)
    return PRECISIONS[name]


# ---- Inference policy (issue 8) -----------------------------------------------------------
@dataclass(frozen=True)
class InferencePolicy:
    """How a trained generator runs for inference: precision and memory layout."""

    precision: Precision
    channels_last: bool


def select_inference_policy(name: str = DEFAULT_INFERENCE_PRECISION, *,
                            device: torch.device) -> InferencePolicy:
    """'auto': bf16 + channels_last on GPUs with bf16 and on CPUs with native bf16 (measured
    faster, and colours within mean CIEDE2000 0.5 of fp32 on real photos: README), fp16 on
    older GPUs, fp32 (channels_last) elsewhere. A named precision is used as asked.

    Training keeps its own default (`select_precision`): this policy is inference only.
    """
    if name == "auto":
        if device.type == "cuda":
            precision = PRECISIONS["bf16" if supports_bf16(device) else "fp16"]
        else:
            precision = PRECISIONS["bf16" if supports_bf16(device) else "fp32"]
        return InferencePolicy(precision, channels_last=True)
    return InferencePolicy(select_precision(name, device=device), channels_last=True)


# ---- Training precision (issue 7) ---------------------------------------------------------
def select_training_precision(name: str = DEFAULT_PRECISION, *,
                              device: torch.device) -> Precision:
    """Training's precision: as `select_precision`, except that 'auto' is bf16 on a CPU with
    native bf16 (AVX512-BF16 / AMX), where benchmarks/train_step.py measured it faster than
    fp32 and the loss curve follows fp32's. Weights and optimiser state stay fp32."""
    if name == "auto" and device.type == "cpu" and cpu_supports_bf16():
        return PRECISIONS["bf16"]
    return select_precision(name, device=device)


def memory_format(precision: Precision) -> torch.memory_format:
    """channels_last under mixed precision (oneDNN's and cuDNN's fast bf16/fp16 convs want
    NHWC); the plain NCHW layout for fp32, where NHWC gained little on the CPU."""
    if precision.autocast_dtype is None:
        return torch.contiguous_format
    return torch.channels_last


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """Autocast for `precision` on `device`; a no-op context for fp32."""
    if precision.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=precision.autocast_dtype)


def describe_hardware(device: torch.device) -> dict[str, Any]:
    """Where a model was trained, for its card: device, its name (GPU or CPU model), the CPU
    count and the torch / CUDA versions."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_model() or platform.processor() or platform.machine()
    return {"device": str(device), "device_name": name, "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "torch": torch.__version__,
            "cuda": torch.version.cuda if device.type == "cuda" else None}


def _cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else None

"""Device and precision choice: names checked, 'auto' resolved, bf16 detected from the CPU."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from colorization import devices


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:1"])
def test_known_device_names_pass(name):
    assert devices.check_device_name(name) == name


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "CPU", ""])
def test_unknown_device_names_are_named(name):
    with pytest.raises(ValueError, match=f"unknown device {name!r}"):
        devices.check_device_name(name)


def test_auto_device_follows_cuda_and_a_missing_gpu_is_named():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert devices.select_device("auto").type == expected
    assert devices.select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            devices.select_device("cuda")


def test_auto_precision_is_fp32_on_cpu_and_mixed_on_cuda(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert devices.select_precision("auto", device=cpu).name == "fp32"
    monkeypatch.setattr(devices, "supports_bf16", lambda device: True)
    assert devices.select_precision("auto", device=cuda).name == "bf16"
    monkeypatch.setattr(devices, "supports_bf16", lambda device: False)
    fp16 = devices.select_precision("auto", device=cuda)
    assert fp16.name == "fp16" and fp16.needs_grad_scaler
    assert devices.select_precision("fp32", device=cuda).autocast_dtype is None
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        devices.select_precision("fp8", device=cpu)


def test_cpu_bf16_detection_agrees_with_the_kernel_flags():
    flags = Path("/proc/cpuinfo").read_text()
    has_flag = bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))
    assert devices.cpu_supports_bf16() == has_flag


def test_autocast_runs_matmuls_in_the_chosen_dtype():
    cpu = torch.device("cpu")
    layer, x = nn.Linear(4, 3), torch.randn(2, 4)
    with devices.autocast(cpu, devices.PRECISIONS["bf16"]):
        assert layer(x).dtype == torch.bfloat16
    with devices.autocast(cpu, devices.PRECISIONS["fp32"]):
        assert layer(x).dtype == torch.float32


def test_inference_auto_is_bf16_channels_last_where_bf16_is_native(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(devices, "supports_bf16", lambda device: True)
    for device in (cpu, cuda):
        policy = devices.select_inference_policy("auto", device=device)
        assert (policy.precision.name, policy.channels_last) == ("bf16", True)
    assert devices.select_precision("auto", device=cpu).name == "fp32"  # training unchanged
    monkeypatch.setattr(devices, "supports_bf16", lambda device: False)
    assert devices.select_inference_policy("auto", device=cpu).precision.name == "fp32"
    assert devices.select_inference_policy("auto", device=cuda).precision.name == "fp16"
    assert devices.select_inference_policy("fp32", device=cuda).precision.name == "fp32"
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        devices.select_inference_policy("fp8", device=cpu)


def test_colorizer_runs_bf16_weights_channels_last_and_fp32_on_request(tiny_model):
    from colorization.inference import Colorizer

    models_root, model_id = tiny_model
    fast = Colorizer.load(model_id, models_root=models_root, device="cpu", precision="bf16")
    exact = Colorizer.load(model_id, models_root=models_root, device="cpu", precision="fp32")
    assert next(fast.generator.parameters()).dtype == torch.bfloat16
    assert next(exact.generator.parameters()).dtype == torch.float32
    conv = next(m for m in fast.generator.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_training_auto_precision_is_bf16_on_cpus_with_native_bf16(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: True)
    bf16 = devices.select_training_precision("auto", device=cpu)
    assert bf16.name == "bf16" and devices.memory_format(bf16) == torch.channels_last
    # Inference's 'auto' (issue 8's) is untouched; an explicit name always wins.
    assert devices.select_precision("auto", device=cpu).name == "fp32"
    assert devices.select_training_precision("fp32", device=cpu).name == "fp32"
    assert devices.memory_format(devices.PRECISIONS["fp32"]) == torch.contiguous_format
    monkeypatch.setattr(devices, "cpu_supports_bf16", lambda: False)
    assert devices.select_training_precision("auto", device=cpu).name == "fp32"
    monkeypatch.setattr(devices, "supports_bf16", lambda device: False)
    assert devices.select_training_precision("auto", device=cuda).name == "fp16"

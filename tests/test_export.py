"""Export: the ONNX generator computes what torch computes, on real photos, any size."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from support import FIXTURE_PHOTOS

from colorization import color, storage, versions
from colorization.export import EXPORT_FORMATS, export_model

PHOTOS = sorted(FIXTURE_PHOTOS.glob("*.jpg"))[:4]


def _l_norm(path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """A real photo's normalised L, [1, 1, H, W] (resized to `size` = (W, H) when given)."""
    image = color.load_image(path.read_bytes(), name=str(path))
    if size is not None:
        image = image.resize(size)
    return color.rgb_to_model_input(color.image_to_tensor(image)[None])[0]


def test_onnx_matches_torch_on_real_photos(better_than_gray):
    models_root, model_id = better_than_gray
    url = export_model(model_id, export_format="onnx", models_root=models_root)
    assert url == storage.join(models_root, model_id, "generator.onnx")
    model = onnx.load_from_string(storage.read_bytes(url))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["model_id"] == model_id and "L / 50 - 1" in meta["convention"]
    session = onnxruntime.InferenceSession(model.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["l"]
    generator, _ = versions.load_generator(model_id, models_root=models_root)
    # Full-resolution photos of different shapes one by one, then a batch of three: the
    # batch, height and width are all dynamic (none of these is the 32-px training size).
    inputs = [_l_norm(path) for path in PHOTOS]
    inputs.append(torch.cat([_l_norm(path, (45, 61)) for path in PHOTOS[:3]]))
    inputs.append(torch.cat([_l_norm(path, (64, 48)) for path in PHOTOS[:2]]))  # no padding
    assert len({tuple(x.shape) for x in inputs}) >= 3
    for l_norm in inputs:
        with torch.no_grad():
            expected = generator(l_norm).numpy()  # [N, 2, H, W]
        (got,) = session.run(["ab"], {"l": l_norm.numpy()})
        assert got.shape == expected.shape == (l_norm.shape[0], 2, *l_norm.shape[2:])
        assert np.abs(expected).max() > 0.05  # a model that colours, not a zero map
        np.testing.assert_allclose(got, expected, atol=1e-3, rtol=0)


def test_export_names_what_is_wrong(better_than_gray, tmp_path):
    models_root, model_id = better_than_gray
    with pytest.raises(FileNotFoundError, match="'nope'"):
        export_model("nope", models_root=models_root)
    with pytest.raises(ValueError, match="unknown export format 'tflite'; known: onnx"):
        export_model(model_id, export_format="tflite", models_root=models_root)
    assert set(EXPORT_FORMATS) == {"onnx"}


def test_onnx_export_of_the_resnet18_unet_is_dynamic_too(tmp_path):
    """The other registered architecture: a ResNet18 encoder (random, small decoder)."""
    from colorization.models import ModelSpec, build_generator

    spec = ModelSpec("resnet18_unet", {"weights": "none", "decoder_width": 32})
    model_id = versions.new_model_id("pretrain")
    versions.save_version(build_generator(spec, seed=0), {
        "stage": "pretrain", "generator": spec.to_dict(), "image_size": 64},
        model_id=model_id)
    out = tmp_path / "resnet.onnx"
    assert export_model(model_id, out=str(out)) == str(out)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    generator, _ = versions.load_generator(model_id)
    for l_norm in (_l_norm(PHOTOS[0]), torch.cat([_l_norm(p, (70, 45)) for p in PHOTOS[:2]])):
        with torch.no_grad():
            expected = generator(l_norm).numpy()
        (got,) = session.run(["ab"], {"l": l_norm.numpy()})
        # Random weights give small outputs (|ab| ~ 1e-3): compare relative to them.
        assert np.abs(expected).max() > 1e-3
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-6)

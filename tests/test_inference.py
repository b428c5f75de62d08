"""Full-resolution colorization: L kept from the input, ab from the model, files handled."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2lab
from torch import nn

from colorization import storage
from colorization.inference import Colorizer, colorize_paths


class ConstantAB(nn.Module):
    """A 'model' predicting one colour everywhere: a = 0.2 x 110 = 22, b = -0.1 x 110 = -11."""

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:  # [B, 1, S, S] -> [B, 2, S, S]
        ab = torch.tensor([0.2, -0.1]).view(1, 2, 1, 1)
        return ab.expand(l_norm.shape[0], 2, *l_norm.shape[-2:]).clone()


def _lab(img: Image.Image) -> np.ndarray:
    return rgb2lab(np.asarray(img.convert("RGB"), dtype=np.float64) / 255)


def test_full_resolution_keeps_l_and_applies_the_predicted_ab(fixture_photos):
    with Image.open(sorted(fixture_photos.glob("*.jpg"))[0]) as photo:
        gray = photo.convert("L").resize((201, 147))
    colorizer = Colorizer(ConstantAB(), image_size=32, device=torch.device("cpu"))
    (out,) = colorizer.colorize([gray])
    assert out.size == (201, 147) and out.mode == "RGB"
    lab_in, lab_out = _lab(gray), _lab(out)
    # Midtones are in gamut for this colour, so L is the input's and ab the model's,
    # up to 8-bit rounding.
    midtones = (lab_in[..., 0] > 25) & (lab_in[..., 0] < 85)
    assert midtones.mean() > 0.3
    assert np.abs(lab_out[..., 0] - lab_in[..., 0])[midtones].mean() < 0.3
    assert np.abs(lab_out[..., 1][midtones] - 22).mean() < 0.6
    assert np.abs(lab_out[..., 2][midtones] + 11).mean() < 0.6


def test_batches_give_the_same_result_as_single_images(tiny_model, fixture_photos):
    models_root, model_id = tiny_model
    colorizer = Colorizer.load(model_id, models_root=models_root, device="cpu")
    photos = []
    for path in sorted(fixture_photos.glob("*.jpg"))[:3]:
        with Image.open(path) as img:
            photos.append(img.convert("L"))
    together = colorizer.colorize(photos)
    for photo, batched in zip(photos, together, strict=True):
        (alone,) = colorizer.colorize([photo])
        assert alone.size == photo.size
        diff = np.abs(np.asarray(alone, int) - np.asarray(batched, int))
        assert diff.max() <= 1


def test_colorize_paths_handles_folders_broken_files_and_resume(tiny_model, fixture_photos,
                                                                tmp_path):
    models_root, model_id = tiny_model
    source = tmp_path / "archive"
    (source / "1950s").mkdir(parents=True)
    photos = sorted(fixture_photos.glob("*.jpg"))
    for path in photos[:2]:
        with Image.open(path) as img:
            img.convert("L").save(source / (path.stem + ".png"))
    shutil.copy(photos[2], source / "1950s" / "street.jpg")
    (source / "1950s" / "torn.jpg").write_bytes(b"\xff\xd8 truncated")
    (source / "notes.txt").write_text("not an image, not listed")
    before = {p: p.read_bytes() for p in source.rglob("*") if p.is_file()}
    out = tmp_path / "out"

    report = colorize_paths([str(source)], out=str(out), model=model_id,
                            models_root=models_root, batch_size=2, device="cpu")
    assert sorted(storage.relative_key(u, str(out)) for u in report.written) == sorted(
        [photos[0].stem + ".png", photos[1].stem + ".png", "1950s/street.jpg"])
    assert list(report.failed) == [str(source / "1950s" / "torn.jpg")]
    assert "torn.jpg" in report.failed[str(source / "1950s" / "torn.jpg")]
    with Image.open(out / "1950s" / "street.jpg") as img, Image.open(photos[2]) as orig:
        assert img.size == orig.size and img.format == "JPEG"
    assert {p: p.read_bytes() for p in source.rglob("*") if p.is_file()} == before

    again = colorize_paths([str(source)], out=str(out), model=model_id,
                           models_root=models_root, device="cpu")
    assert again.written == [] and len(again.skipped_existing) == 3
    forced = colorize_paths([str(source / "1950s" / "street.jpg")], out=str(tmp_path / "o2"),
                            model=model_id, models_root=models_root, overwrite=True)
    assert forced.written == [storage.join(str(tmp_path / "o2"), "street.jpg")]


def test_colorize_between_s3_prefixes(tiny_model, fixture_photos, s3_bucket):
    models_root, model_id = tiny_model
    photo = sorted(fixture_photos.glob("*.jpg"))[3]
    storage.upload(photo, storage.join(s3_bucket, "in/a/photo.jpg"))
    report = colorize_paths([storage.join(s3_bucket, "in")], out=storage.join(s3_bucket, "out"),
                            model=model_id, models_root=models_root)
    assert report.written == [storage.join(s3_bucket, "out/a/photo.jpg")]
    with Image.open(io.BytesIO(storage.read_bytes(report.written[0]))) as img, \
            Image.open(photo) as orig:
        assert img.size == orig.size


def test_missing_input_and_model_are_named(tmp_path, tiny_model):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        colorize_paths([str(tmp_path / "nowhere")], out=str(tmp_path / "out"))
    photo = tmp_path / "p.png"
    Image.new("L", (8, 8), 128).save(photo)
    with pytest.raises(FileNotFoundError, match="no promoted model"):
        colorize_paths([str(photo)], out=str(tmp_path / "out"))


def test_a_failed_write_is_reported_like_a_failed_read(tiny_model, fixture_photos, tmp_path,
                                                       monkeypatch):
    models_root, model_id = tiny_model
    source = tmp_path / "in"
    source.mkdir()
    for path in sorted(fixture_photos.glob("*.jpg"))[:3]:
        shutil.copy(path, source / path.name)
    names = sorted(p.name for p in source.iterdir())
    out = tmp_path / "out"
    real_write = storage.write_bytes

    def flaky_write(url: str, data: bytes) -> None:
        if url.endswith(names[1]):
            raise PermissionError(13, "Permission denied", url)
        real_write(url, data)

    monkeypatch.setattr(storage, "write_bytes", flaky_write)
    report = colorize_paths([str(source)], out=str(out), model=model_id,
                            models_root=models_root, batch_size=3, device="cpu")
    # The run went on: the other two were written; the failure names the output.
    assert sorted(p.name for p in out.iterdir()) == [names[0], names[2]]
    assert list(report.failed) == [str(source / names[1])]
    assert "cannot write" in report.failed[str(source / names[1])]
    assert "Permission denied" in report.failed[str(source / names[1])]


@pytest.mark.parametrize("make_input", ["text_file", "empty_folder"])
def test_inputs_without_images_are_named(tmp_path, make_input):
    if make_input == "text_file":
        target = tmp_path / "notes.txt"
        target.write_text("hello")
        expected = "notes.txt: not an image file"
    else:
        target = tmp_path / "empty"
        target.mkdir()
        expected = "empty: no image files found"
    with pytest.raises(ValueError, match=expected):
        colorize_paths([str(target)], out=str(tmp_path / "out"))

"""The `colorize` command line, called in-process."""

from __future__ import annotations

import json

from PIL import Image

from colorization import versions
from colorization.cli import main


def test_images_and_models_commands(tiny_model, tmp_path, capsys, monkeypatch):
    models_root, model_id = tiny_model
    monkeypatch.setenv("COLORIZATION_HOME", str(tmp_path / "home"))
    photo = tmp_path / "in" / "old.png"
    photo.parent.mkdir()
    Image.new("L", (40, 30), 100).save(photo)
    model_url = versions.resolve(model_id, models_root=models_root)
    assert main(["images", str(photo.parent), "--out", str(tmp_path / "out"),
                 "--model", model_url]) == 0
    assert "wrote 1 images" in capsys.readouterr().out
    with Image.open(tmp_path / "out" / "old.png") as img:
        assert img.size == (40, 30)


def test_errors_exit_2_naming_the_input(tmp_path, capsys):
    assert main(["images", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["evaluate", "nope", "--dataset", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err


def test_prepare_train_evaluate_promote(fixture_photos, capsys):
    assert main(["prepare", str(fixture_photos), "--image-size", "16"]) == 0
    dataset = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["train", dataset, "--epochs", "1", "--batch-size", "16", "--generator", "unet",
                 "--options", '{"num_downs": 3, "base_channels": 4}']) == 0
    model_id = json.loads(capsys.readouterr().out)["model_id"]
    assert main(["evaluate", model_id, "--dataset", dataset]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 8
    assert main(["models", "promote", model_id]) == 0
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    assert capsys.readouterr().out.startswith(f"* {model_id}")

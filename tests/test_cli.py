"""The `colorize` command line, called in-process."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from PIL import Image

from colorization import storage, versions
from colorization.cli import build_parser, main
from colorization.cli_options import HelpFormatter


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
                 "--options", '{"num_downs": 3, "base_channels": 4}', "--ema-decay", "0.5"]) == 0
    model_id = json.loads(capsys.readouterr().out)["model_id"]
    assert versions.read_card(model_id)["training"]["ema_decay"] == 0.5
    assert main(["evaluate", model_id, "--dataset", dataset, "--no-review"]) == 0
    captured = capsys.readouterr()
    assert f"| metric | model: {model_id} (pretrain) | grayscale (ab = 0) |" in captured.out
    assert "8 photos of" in captured.out and "8/8 photos" in captured.err
    assert main(["models", "promote", model_id]) == 0
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    assert capsys.readouterr().out.startswith(f"* {model_id}")


def _options(parser: argparse.ArgumentParser, path: str = "colorize"):
    """Every (command path, option action) of the parser tree."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _options(child, f"{path} {name}")
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_option_has_help_and_shows_its_default():
    parser = build_parser()
    options = list(_options(parser))
    assert len(options) > 30
    for command, action in options:
        name = f"{command} {action.option_strings[-1]}"
        assert action.help and len(action.help) > 10, f"{name}: no help text"
        shown = HelpFormatter("colorize")._get_help_string(action)
        assert action.required or "default:" in shown, f"{name}: default not shown"
    # argparse renders them: spot-check one command's help text.
    train_help = parser._subparsers._group_actions[0].choices["train"].format_help()
    assert "(default: pretrain)" in train_help and "{auto,fp32,bf16,fp16}" in train_help


def test_options_a_command_ignores_are_not_offered():
    offered: dict[str, set[str]] = {}
    for command, action in _options(build_parser()):
        offered.setdefault(command, set()).add(action.dest)
    assert "device" not in offered["colorize prepare"]
    assert "colorize models list" not in offered  # it takes no options at all
    assert "seed" not in offered["colorize evaluate"]
    assert {"device", "precision"} <= offered["colorize images"]


def test_a_text_file_is_one_clear_line_and_a_nonzero_exit(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    # As a user runs it: a separate process, so nothing of pytest's catches a traceback.
    done = subprocess.run([sys.executable, "-m", "colorization.cli", "images", str(notes),
                           "--out", str(tmp_path / "x")], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert lines == [f"colorize: error: {notes}: not an image file "
                     "(expected .jpg, .jpeg, .png, .bmp, .tif, .tiff, .webp, .gif)"], done.stderr
    assert not (tmp_path / "x").exists()


def test_an_s3_prefix_holding_only_a_text_file_is_a_clear_error(s3_bucket, capsys):
    storage.write_text(storage.join(s3_bucket, "incoming/notes.txt"), "not a photo")
    prefix = storage.join(s3_bucket, "incoming")
    assert main(["images", prefix, "--out", storage.join(s3_bucket, "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"colorize: error: {prefix}: no image files found "
                   "(looked for .jpg, .jpeg, .png, .bmp, .tif, .tiff, .webp, .gif)"]
    text_object = storage.join(prefix, "notes.txt")
    assert main(["images", text_object, "--out", storage.join(s3_bucket, "out")]) == 2
    assert "notes.txt: not an image file" in capsys.readouterr().err
    assert storage.list_files(s3_bucket) == [text_object]  # nothing written, input kept


def test_storage_errors_are_one_line(s3_bucket, capsys):
    # A bucket that does not exist: boto's error becomes one line naming the URL.
    assert main(["images", "s3://no-such-bucket-here/x", "--out", str(s3_bucket)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s3://no-such-bucket-here/x" in err[0], err


# --- Issue 9: models show / promote through the gate / export --------------------------------
def test_models_promote_show_and_export(better_than_gray, tiny_dataset, tmp_path, capsys):
    from support import TINY_GENERATOR

    from colorization.models import build_generator

    source_root, trained = better_than_gray
    for url in storage.list_files(storage.join(source_root, trained)):
        storage.write_bytes(storage.join(str(tmp_path / "home" / "models"),
                                         storage.relative_key(url, source_root)),
                            storage.read_bytes(url))
    untrained = versions.new_model_id("untrained")
    versions.save_version(build_generator(TINY_GENERATOR, seed=7), {
        "stage": "pretrain", "generator": TINY_GENERATOR.to_dict(), "image_size": 32,
        "dataset": tiny_dataset}, model_id=untrained)
    gate = ["--device", "cpu", "--dataset", tiny_dataset]
    assert main(["models", "promote", trained, *gate]) == 0
    assert "first model" in capsys.readouterr().out
    # A worse challenger: refused in one line, exit 1, the champion stays.
    assert main(["models", "promote", untrained, *gate]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"colorize: refused: {untrained}: worse than")
    assert versions.champion() == trained
    # --force bypasses the gate and says so in the history.
    assert main(["models", "promote", untrained, "--force", "--reason", "ops test"]) == 0
    capsys.readouterr()
    assert versions.champion() == untrained
    assert (versions.history()[-1]["forced"], versions.history()[-1]["reason"]) == (
        True, "ops test")

    assert main(["models", "show", trained]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["model_id"] == trained and card["champion"] is False
    assert card["hardware"]["device"] == "cpu" and "git_commit" in card
    assert [d["promoted"] for d in card["decisions"]] == [True, False, True]
    assert main(["models", "show"]) == 0  # the champion
    assert json.loads(capsys.readouterr().out)["model_id"] == untrained

    out = tmp_path / "exported" / "g.onnx"
    assert main(["models", "export", trained, "--format", "onnx", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out) and out.stat().st_size > 1000
    assert main(["models", "export", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model 'nope'" in err[0]

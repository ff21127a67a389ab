"""Wrong arguments get one line naming the problem and the fix, and a non-zero exit; no traceback
unless --debug."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from helpers import make_folder

FAST = ["--backbone", "mobilenet_025", "--image-size", "32", "--weights", "none"]


def run(args: list[str]):
    result = CliRunner().invoke(main, args)
    assert "Traceback" not in result.output
    return result


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "photos", {"train": 2, "val": 1})


def test_the_real_command_prints_one_line_and_exits_2(tmp_path):
    exe = Path(sys.executable).with_name("transfer")
    p = subprocess.run([str(exe), "extract", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [p.stderr.strip()] and "nowhere" in p.stderr and "Traceback" not in p.stderr


def test_missing_directory_is_named(tmp_path):
    line = one_line_error(run(["extract", str(tmp_path / "no such dir")]))
    assert "no such dir" in line and "not found" in line


def test_unknown_backbone_lists_the_known_and_suggests_the_closest(photos):
    line = one_line_error(run(["extract", str(photos), "--backbone", "mobilenetv2"]))
    assert "Did you mean mobilenet_v2?" in line and "vgg16" in line and "efficientnetb0" in line


def test_image_size_below_the_backbone_minimum(photos):
    line = one_line_error(run(["extract", str(photos), "--backbone", "inception_v3", "--image-size", "60"]))
    assert "--image-size 60" in line and "range of 75 to" in line


def test_missing_weights_file(photos, tmp_path):
    line = one_line_error(run(["extract", str(photos), "--backbone", "mobilenet_025", "--weights",
                               str(tmp_path / "w.h5")]))
    assert "weights file not found" in line and "imagenet, none" in line


@pytest.mark.filterwarnings("ignore:Skipping nested container:UserWarning")  # Keras, layer by layer, before the error
def test_weights_file_of_another_model(photos, tmp_path):
    import keras

    wrong = tmp_path / "vgg.weights.h5"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save_weights(wrong)
    line = one_line_error(run(["extract", str(photos), *FAST[:4], "--weights", str(wrong),
                               "--cache-dir", str(tmp_path / "c")]))
    assert "does not fit mobilenet_025" in line


def test_both_val_and_validation_folders(tmp_path):
    root = make_folder(tmp_path / "d", {"train": 1, "val": 1, "validation": 1})
    line = one_line_error(run(["extract", str(root), *FAST]))
    assert "both val/ and validation/" in line and "keep one" in line


def test_fractions_with_split_folders(photos):
    line = one_line_error(run(["extract", str(photos), *FAST, "--val-fraction", "0.2"]))
    assert "already has split folders" in line


def test_cache_dir_that_cannot_be_written(photos, tmp_path):
    (tmp_path / "a-file").write_text("")
    line = one_line_error(run(["extract", str(photos), *FAST, "--cache-dir", str(tmp_path / "a-file" / "sub")]))
    assert "cannot write the cache folder" in line and "--cache-dir" in line


@pytest.mark.parametrize("content", [b"", b"just text", b"\x89HDF\r\n\x1a\n garbage"])
def test_a_file_that_is_not_a_feature_file_given_to_train_or_info(tmp_path, content):
    bad = tmp_path / "features.h5"
    bad.write_bytes(content)
    for command in ("info", "train"):
        line = one_line_error(run([command, str(bad)]))
        assert str(bad) in line and "transfer extract" in line


def test_an_hdf5_file_that_is_not_a_feature_file(tmp_path):
    import h5py

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1, 2, 3]
    for command in ("info", "train"):
        assert "not a feature file written by `transfer extract`" in one_line_error(run([command, str(other)]))


def test_missing_feature_file(tmp_path):
    line = one_line_error(run(["train", str(tmp_path / "gone.h5")]))
    assert "not found" in line and "transfer extract" in line


def test_an_unexpected_error_is_one_line_and_debug_shows_it(photos, monkeypatch):
    import pipeline.extraction

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pipeline.extraction, "extract", broken)
    line = one_line_error(run(["extract", str(photos)]), code=1)
    assert "RuntimeError: disk on fire" in line and "--debug" in line
    debug = CliRunner().invoke(main, ["--debug", "extract", str(photos)])
    assert isinstance(debug.exception, RuntimeError)  # raised, so Python prints the traceback

"""Files from others, round two: the model cache. A converted model is trusted only as far as its provenance
goes (another user's file is checked against TensorFlow first), every model must give finite float32 features of
the recorded shape, and a held conversion lock says whom it waits for and gives up in time."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from helpers import make_folder
from pipeline import extract
from pipeline.cli import main
from pipeline.deploy.converting import INPUT_NAME
from pipeline.errors import PipelineError
from pipeline.hashing import file_sha256
from pipeline.runtimes import onnx_cache
from pipeline.runtimes.provenance import foreign_writer

pytestmark = pytest.mark.usefixtures("own_model_cache")  # tests look into each cache's models/ folder

ARGS = dict(backbone="vgg16", image_size=32, weights="none", batch_size=8)
OTHER_USER = 12345


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict:
    """A small folder extracted on TensorFlow and on ONNX Runtime (VGG16, random weights, 32 px)."""
    root = tmp_path_factory.mktemp("trust")
    data = make_folder(root / "data", {"train": 4, "val": 2})
    tf = extract(data, cache_dir=str(root / "tf"), runtime="tensorflow", **ARGS)
    onnx = extract(data, cache_dir=str(root / "onnx"), runtime="onnx", **ARGS)
    assert onnx["runtime"] == "onnx"
    (model,) = (root / "onnx" / "models").glob("*.onnx")
    return {"data": data, "tf": tf, "model": model}


def cache_with(converted: dict, tmp_path: Path, model_bytes: bytes | None = None) -> Path:
    """A cache folder holding a copy of the converted model (or ``model_bytes`` under its name, with a sidecar
    whose sha256 matches, as anyone who can write the folder could make it)."""
    models = tmp_path / "cache" / "models"
    shutil.copytree(converted["model"].parent, models, ignore=shutil.ignore_patterns("*.lock"))
    model = models / converted["model"].name
    if model_bytes is not None:
        model.write_bytes(model_bytes)
        side = model.with_suffix(".json")
        side.write_text(json.dumps({**json.loads(side.read_text()), "sha256": file_sha256(model)}))
    return model


def substitute(shape: tuple[int, ...], fill: float | None = None) -> bytes:
    """An ONNX model taking the pipeline's input (float32 (batch, 32, 32, 3)) to features of ``shape`` per
    image: plausible numbers from the pixels, or ``fill`` everywhere."""
    from onnx import TensorProto, helper, numpy_helper

    width = int(np.prod(shape))
    weights = np.random.default_rng(0).normal(0, 1e-3, (32 * 32 * 3, width)).astype(np.float32)
    nodes = [helper.make_node("Flatten", [INPUT_NAME], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "w"], ["mixed"])]
    inits = [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(np.array([-1, *shape], np.int64), "s")]
    if fill is not None:
        nodes.append(helper.make_node("Mul", ["mixed", "fill"], ["filled"]))
        inits.append(numpy_helper.from_array(np.array([fill], np.float32), "fill"))
    nodes.append(helper.make_node("Reshape", ["filled" if fill is not None else "mixed", "s"], ["features"]))
    graph = helper.make_graph(nodes, "substitute",
                              [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 32, 32, 3])],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def recorded_shape(model: Path) -> tuple[int, ...]:
    return tuple(json.loads(model.with_suffix(".json").read_text())["output_shape"])


def features(summary: dict) -> np.ndarray:
    with h5py.File(summary["cache"], "r") as f:
        order = np.argsort(f["train/paths"].asstr()[()])
        return f["train/features"][()][order]


def run_extract(converted: dict, model: Path):
    return CliRunner().invoke(main, ["extract", str(converted["data"]), "--backbone", "vgg16", "--image-size", "32",
                                     "--weights", "none", "--batch-size", "8", "--runtime", "onnx",
                                     "--cache-dir", str(model.parent.parent), "--json"])


def last_line_refusal(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("Error: "), result.output
    for word in words:
        assert word in line, line
    return line


# ---------------------------------------------------------------- provenance


def test_only_files_no_one_else_can_write_are_this_users_own(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    mine = folder / "m.onnx"
    mine.write_bytes(b"x")
    os.chmod(mine, 0o644)
    assert foreign_writer(mine) == ""
    os.chmod(mine, 0o646)
    assert "writable by everyone" in foreign_writer(mine)
    os.chmod(mine, 0o644)
    os.chown(mine, OTHER_USER, -1)
    assert f"belongs to user id {OTHER_USER}" in foreign_writer(mine)
    os.chown(mine, os.geteuid(), -1)
    os.chmod(folder, 0o777)
    assert "writable by everyone" in foreign_writer(mine)
    os.chmod(folder, 0o1777)  # sticky, as /tmp: others cannot replace this user's files
    assert foreign_writer(mine) == ""
    (folder / "link.onnx").symlink_to(mine)
    assert "is a link" in foreign_writer(folder / "link.onnx")


def test_another_users_model_that_disagrees_with_tensorflow_is_refused_and_never_stores_features(converted, tmp_path):
    model = cache_with(converted, tmp_path, substitute(recorded_shape(converted["model"])))
    for path in (model, model.with_suffix(".json")):
        os.chown(path, OTHER_USER, -1)
    s = extract(converted["data"], cache_dir=str(model.parent.parent), runtime="onnx", **ARGS)
    assert s["runtime"] == "tensorflow" and s["computed"] == converted["tf"]["computed"]
    note = " ".join(s["notes"])
    assert "differs from TensorFlow" in note and f"user id {OTHER_USER}" in note and "delete" in note
    assert np.allclose(features(s), features(converted["tf"]), atol=1e-5)


def test_another_users_model_that_agrees_is_used_after_a_check_but_never_without_tensorflow(converted, tmp_path):
    model = cache_with(converted, tmp_path)
    os.chown(model, OTHER_USER, -1)
    s = extract(converted["data"], cache_dir=str(model.parent.parent), runtime="onnx", **ARGS)
    assert s["runtime"] == "onnx" and any("checked the converted model" in n for n in s["notes"])
    job_models = [p for p in model.parent.glob("*.onnx")]
    assert job_models == [model] and model.stat().st_uid == OTHER_USER  # checked, not rewritten


# ---------------------------------------------------------------- what every model must give


@pytest.mark.parametrize("case", ["width", "nan"])
def test_a_model_of_another_width_or_giving_nan_stores_nothing(converted, tmp_path, case):
    shape = recorded_shape(converted["model"])
    crafted = substitute((7,)) if case == "width" else substitute(shape, fill=float("nan"))
    model = cache_with(converted, tmp_path, crafted)  # this user's own: trusted for provenance, not for output
    error = last_line_refusal(run_extract(converted, model), str(model))
    assert ("not float32" in error) if case == "width" else ("not finite" in error)
    assert not list((tmp_path / "cache").rglob("*.h5"))


def test_a_sidecar_without_the_output_shape_is_converted_again(converted, tmp_path):
    model = cache_with(converted, tmp_path)
    side = model.with_suffix(".json")
    record = json.loads(side.read_text())
    del record["output_shape"]
    side.write_text(json.dumps(record))
    s = extract(converted["data"], cache_dir=str(model.parent.parent), runtime="onnx", **ARGS)
    assert s["runtime"] == "onnx" and any("records no output shape" in n for n in s["notes"])
    assert recorded_shape(model) == recorded_shape(converted["model"])


# ---------------------------------------------------------------- lock waits that speak


def test_a_held_conversion_lock_says_whom_it_waits_for_at_once_and_gives_up_in_time(tmp_path, monkeypatch, caplog):
    model = tmp_path / "models" / "m.onnx"
    model.parent.mkdir()
    lock = model.with_suffix(".lock")
    lock.write_text("pid 4242 on elsewhere since 2026-01-01 00:00:00")
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    monkeypatch.setattr(onnx_cache, "LOCK_WAIT", 2.0)
    start, errors = time.time(), []
    caplog.set_level(logging.WARNING, logger="pipeline")

    def wait():
        try:
            with onnx_cache._locked(model):
                pass
        except PipelineError as exc:
            errors.append((str(exc), time.time() - start))

    try:
        worker = threading.Thread(target=wait)
        worker.start()
        worker.join(10)
    finally:
        os.close(fd)
    (said,) = [r for r in caplog.records if "waiting for" in r.getMessage()]
    assert "pid 4242 on elsewhere" in said.getMessage() and said.created - start < 1.0
    ((error, when),) = errors
    assert "gave up after waiting" in error and "pid 4242" in error and 2.0 <= when < 5.0


def test_a_held_conversion_lock_ends_the_command_with_exit_2(converted, tmp_path, monkeypatch):
    model = tmp_path / "cache" / "models" / converted["model"].name
    model.parent.mkdir(parents=True)
    fd = os.open(model.with_suffix(".lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    monkeypatch.setenv("TRANSFER_LOCK_WAIT", "0.5")
    try:
        last_line_refusal(run_extract(converted, model), "gave up after waiting", "--runtime tensorflow")
    finally:
        os.close(fd)


def test_a_lock_path_that_is_a_dangling_link_creates_nothing(converted, tmp_path):
    model = tmp_path / "cache" / "models" / converted["model"].name
    model.parent.mkdir(parents=True)
    target = tmp_path / "created-elsewhere"
    model.with_suffix(".lock").symlink_to(target)
    last_line_refusal(run_extract(converted, model), "is a link")
    assert not os.path.lexists(target)
    data = make_folder(tmp_path / "data", {"train": 2})
    first = extract(data, cache_dir=str(tmp_path / "other"), runtime="tensorflow", **ARGS)
    lock = Path(first["cache"] + ".lock")
    lock.unlink(missing_ok=True)
    lock.symlink_to(target)
    make_folder(data, {"train": 3}, seed=50)  # one more photo per class: the next run writes
    again = CliRunner().invoke(main, ["extract", str(data), "--backbone", "vgg16", "--image-size", "32",
                                      "--weights", "none", "--runtime", "tensorflow", "--cache-dir",
                                      str(tmp_path / "other")])
    last_line_refusal(again, "is a link")
    assert not os.path.lexists(target)

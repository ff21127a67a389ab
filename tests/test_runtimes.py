"""Runtimes: the base on ONNX Runtime computes TensorFlow's features, converted once into the model cache and
checked; bad cached models are rebuilt, failed conversions fall back with a note; ``auto`` follows its
table; one feature file holds rows of both runtimes; cached runs never import TensorFlow."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from helpers import SHARED_WEIGHTS, make_folder, make_image, needs_shared
from pipeline.parity import relative_diff
from pipeline import FeatureFile, PipelineError, backbones, extract, predict, train
from pipeline.cli import main
from pipeline.runtimes import MODEL_CACHE_ENV, RUNTIMES, auto, onnx_cache

pytestmark = pytest.mark.usefixtures("own_model_cache")  # tests look into each cache's models/ folder

REAL = dict(backbone="mobilenet_025", image_size=96, weights_dir=str(SHARED_WEIGHTS), batch_size=8)


def features(summary: dict) -> dict:
    """``{(split, path): features}`` of a feature file."""
    with FeatureFile(summary["cache"]) as f:
        return {(s, p): x for s in f.splits for p, x in zip(f.column(s, "paths"), f.features(s)[()])}


def runtimes_of(summary: dict) -> str:
    with h5py.File(summary["cache"], "r") as f:
        return f.attrs["runtimes"]


def within_tolerance(a: dict, b: dict) -> float:
    """The largest difference between two files' features, relative to their scale (same rows asserted)."""
    assert a.keys() == b.keys()
    keys = sorted(a)
    return relative_diff(np.stack([a[k] for k in keys]), np.stack([b[k] for k in keys]))


def spy_conversions(monkeypatch) -> list:
    """Record every conversion the model cache makes (and let it happen)."""
    calls, real = [], onnx_cache._convert
    monkeypatch.setattr(onnx_cache, "_convert", lambda *a: calls.append(a[1]) or real(*a))
    return calls


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("rt") / "colors", {"train": 6, "val": 3})


@pytest.fixture(scope="module")
def converted(photos, tmp_path_factory) -> dict:
    """MobileNet 0.25 (ImageNet weights) at 96 px extracted on ONNX (converting it) and on TensorFlow."""
    root = tmp_path_factory.mktemp("converted")
    onnx = extract(photos, cache_dir=str(root / "onnx"), runtime="onnx", **REAL)
    tf = extract(photos, cache_dir=str(root / "tf"), runtime="tensorflow", **REAL)
    return {"onnx": onnx, "tf": tf, "models": root / "onnx" / "models"}


def cache_with_model(converted, tmp_path: Path) -> Path:
    """A fresh cache folder whose model cache already holds the converted base."""
    shutil.copytree(converted["models"], tmp_path / "cache" / "models")
    return tmp_path / "cache"


@needs_shared
def test_onnx_features_match_tensorflow_within_the_tolerance(converted):
    onnx, tf = converted["onnx"], converted["tf"]
    assert (onnx["runtime"], tf["runtime"]) == ("onnx", "tensorflow")
    assert (runtimes_of(onnx), runtimes_of(tf)) == ("onnx", "tensorflow")
    assert within_tolerance(features(tf), features(onnx)) <= onnx_cache.TOLERANCE
    (model,) = converted["models"].glob("*.onnx")
    record = json.loads(model.with_suffix(".json").read_text())
    assert record["key"]["backbone"] == "mobilenet_025" and record["key"]["input_size"] == 96
    assert record["parity"] <= record["tolerance"] == onnx_cache.TOLERANCE and record["parity_pixels"] == "photos"
    assert onnx["timings"]["convert"] > 0 and tf["timings"]["convert"] < 0.1


@needs_shared
def test_the_cached_model_is_reused_without_converting(converted, photos, tmp_path, monkeypatch):
    cache = cache_with_model(converted, tmp_path)
    calls = spy_conversions(monkeypatch)
    s = extract(photos, cache_dir=str(cache), runtime="onnx", **REAL)
    assert calls == [] and s["runtime"] == "onnx" and s["computed"] == 18
    assert within_tolerance(features(converted["onnx"]), features(s)) == 0.0


@needs_shared
def test_the_named_model_cache_serves_every_cache_dir_and_predict(converted, photos, tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_CACHE_ENV, str(cache_with_model(converted, tmp_path) / "models"))
    calls = spy_conversions(monkeypatch)
    s = extract(photos, cache_dir=str(tmp_path / "other"), runtime="onnx", **REAL)
    run = train(s["cache"], "logreg", runs_root=str(tmp_path / "runs"))["run_dir"]
    assert len(predict(run, [photos / "val"], runtime="onnx")) == 6
    assert calls == [] and s["runtime"] == "onnx" and not (tmp_path / "other" / "models").exists()


@needs_shared
@pytest.mark.parametrize("damage", ["model", "sidecar"])
def test_a_damaged_cached_model_is_rebuilt(converted, photos, tmp_path, monkeypatch, damage):
    cache = cache_with_model(converted, tmp_path)
    (model,) = (cache / "models").glob("*.onnx")
    if damage == "model":
        model.write_bytes(model.read_bytes()[:-100] + b"x" * 100)
    else:
        model.with_suffix(".json").write_text("{not json")
    calls = spy_conversions(monkeypatch)
    s = extract(photos, cache_dir=str(cache), runtime="onnx", **REAL)
    assert calls == [model] and s["runtime"] == "onnx"
    assert any("rebuilt the converted model" in n for n in s["notes"])
    assert not onnx_cache._problem(model, json.loads(model.with_suffix(".json").read_text())["key"])


@pytest.mark.parametrize("failure", ["conversion", "disagreement"])
def test_a_refused_conversion_falls_back_to_tensorflow_with_a_note(tiny_data, fast_args, monkeypatch, failure):
    from pipeline.deploy import converting

    if failure == "conversion":
        monkeypatch.setattr(converting, "to_onnx", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no Foo op")))
        expected = "converting mobilenet_025 to ONNX failed (RuntimeError: no Foo op)"
    else:
        monkeypatch.setattr(onnx_cache, "relative_diff", lambda a, b: 0.5)
        expected = "differs from TensorFlow by 0.5 of the features' scale, above the tolerance 0.0001"
    fast_args = {**fast_args, "backbone": "mobilenet_025"}  # converts in seconds
    s = extract(tiny_data, **fast_args, runtime="onnx")
    assert s["runtime"] == "tensorflow" and runtimes_of(s) == "tensorflow" and s["computed"] == 22
    (note,) = [n for n in s["notes"] if "TensorFlow" in n]
    assert expected in note and note.endswith("running on TensorFlow")
    monkeypatch.undo()
    calls = spy_conversions(monkeypatch)  # the refusal is recorded: the next run does not try again
    make_image(tiny_data / "train" / "red" / "new.png", (200, 50, 40), seed=999)
    again = extract(tiny_data, **fast_args, runtime="onnx")
    assert calls == [] and again["runtime"] == "tensorflow" and again["computed"] == 1
    assert any(expected in n and "to convert again" in n for n in again["notes"])


def test_auto_follows_the_measured_table(monkeypatch):
    monkeypatch.setattr(auto, "gpu_visible", lambda: False)
    for backbone, (runtime, speedup) in auto.FASTER_ON_CPU.items():
        backbones.get(backbone)  # every entry names a registered backbone
        assert auto.choose(backbone, "float32") == runtime and runtime in RUNTIMES
        assert (runtime == "onnx") == (speedup >= auto.MARGIN)
        assert auto.choose(backbone, "bfloat16") == "tensorflow"
    assert auto.choose("mobilenet_v2", "float32") == "onnx" and auto.choose("vgg16", "float32") == "tensorflow"
    assert auto.choose("a_backbone_nobody_measured", "float32") == "tensorflow"
    monkeypatch.setattr(auto, "gpu_visible", lambda: True)
    assert auto.choose("mobilenet_v2", "float32") == "tensorflow"


def test_a_gpu_is_seen_only_with_devices_a_cuda_build_and_not_hidden(monkeypatch):
    monkeypatch.setattr(auto.glob, "glob", lambda pattern: ["/dev/nvidia0"])
    monkeypatch.setattr(auto.metadata, "version", lambda name: "2.21.0")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert auto.gpu_visible()
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert not auto.gpu_visible()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert auto.gpu_visible()

    def cpu_build(name):
        raise auto.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(auto.metadata, "version", cpu_build)
    assert not auto.gpu_visible()
    monkeypatch.setattr(auto.metadata, "version", lambda name: "2.21.0")
    monkeypatch.setattr(auto.glob, "glob", lambda pattern: [])
    assert not auto.gpu_visible()


@needs_shared
def test_rows_of_both_runtimes_share_one_file(converted, photos, tmp_path):
    data = tmp_path / "colors"
    shutil.copytree(photos, data)
    moved = sorted((data / "train" / "red").iterdir())[:3]
    for p in moved:
        p.rename(tmp_path / p.name)
    cache = cache_with_model(converted, tmp_path)
    first = extract(data, cache_dir=str(cache), runtime="tensorflow", **REAL)
    for p in moved:
        (tmp_path / p.name).rename(data / "train" / "red" / p.name)
    mixed = extract(data, cache_dir=str(cache), runtime="auto", **REAL)
    assert (first["computed"], mixed["computed"], mixed["reused"]) == (15, 3, 15)
    assert mixed["runtime"] == "onnx" and runtimes_of(mixed) == "onnx,tensorflow"
    assert within_tolerance(features(converted["tf"]), features(mixed)) <= onnx_cache.TOLERANCE
    with h5py.File(mixed["cache"], "a") as f:  # a file from before the attribute opens, and counts as TensorFlow
        del f.attrs["runtimes"]
    (data / "train" / "red" / "red0.png").unlink()
    older = extract(data, cache_dir=str(cache), runtime="tensorflow", **REAL)
    assert older["removed"] == 1 and runtimes_of(older) == "tensorflow"


@needs_shared
def test_cached_extract_and_logreg_predict_never_import_tensorflow(converted, photos, tmp_path):
    data = tmp_path / "colors"
    shutil.copytree(photos, data)
    cache = cache_with_model(converted, tmp_path)
    summary = extract(data, cache_dir=str(cache), **REAL)
    run = train(summary["cache"], "logreg", run_dir=tmp_path / "run")["run_dir"]
    make_image(data / "train" / "blue" / "new.png", (40, 60, 200), seed=1234)
    code = (
        "import json, sys\n"
        "from pipeline.cli import main\n"
        "for args in ({extract!r}, {predict!r}):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as exc:\n"
        "        assert not exc.code, exc.code\n"
        "print(json.dumps([m for m in ('tensorflow', 'keras', 'sklearn') if m in sys.modules]))\n"
    ).format(extract=["extract", str(data), "--backbone", "mobilenet_025", "--image-size", "96", "--weights-dir",
                      str(SHARED_WEIGHTS), "--cache-dir", str(cache), "--json"],
             predict=["predict", str(run), str(data / "val"), "--weights-dir", str(SHARED_WEIGHTS), "--json"])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    extracted, predicted = json.loads(lines[0]), json.loads(lines[1])
    assert extracted["computed"] == 1 and extracted["runtime"] == "onnx"
    assert len(predicted) == 6 and all(p["label"] in ("blue", "red") for p in predicted)
    assert json.loads(lines[-1]) == []


@needs_shared
def test_predict_says_so_when_the_model_cache_cannot_be_written(converted, photos, tmp_path):
    summary = extract(photos, cache_dir=str(cache_with_model(converted, tmp_path)), **REAL)
    run = train(summary["cache"], "logreg", run_dir=tmp_path / "run")["run_dir"]
    (tmp_path / "a_file").write_text("")
    r = CliRunner().invoke(main, ["predict", str(run), str(photos / "val"), "--weights-dir", str(SHARED_WEIGHTS),
                                  "--runtime", "onnx", "--cache-dir", str(tmp_path / "a_file" / "cache"), "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)) == 6
    (line,) = [x for x in r.stderr.splitlines() if "model cache" in x]
    assert line.startswith("warning: cannot use the model cache") and line.endswith("running on TensorFlow")


def test_a_wrong_runtime_is_refused_in_one_line(tiny_data, fast_args):
    with pytest.raises(PipelineError, match=r"--runtime 'onxx' is not one of: auto, onnx, tensorflow"):
        extract(tiny_data, **fast_args, runtime="onxx")
    with pytest.raises(PipelineError, match=r"--runtime onnx runs float32 bases only; pass --runtime tensorflow"):
        extract(tiny_data, **fast_args, runtime="onnx", precision="bfloat16")
    runner = CliRunner()
    r = runner.invoke(main, ["extract", str(tiny_data), "--runtime", "onxx"])
    assert r.exit_code == 2 and "Invalid value for '--runtime'" in r.output
    r = runner.invoke(main, ["extract", str(tiny_data), "--runtime", "onnx", "--precision", "bfloat16"])
    assert r.exit_code == 2 and r.output.strip().splitlines() == [
        "Error: --runtime onnx runs float32 bases only; pass --runtime tensorflow (or auto) with --precision bfloat16"]


@needs_shared
def test_predict_from_the_model_cache_needs_no_weights_file(converted, photos, tmp_path, monkeypatch):
    from pipeline.prediction import predict

    summary = extract(photos, cache_dir=str(cache_with_model(converted, tmp_path)), **REAL)
    run = train(summary["cache"], "logreg", run_dir=tmp_path / "run")["run_dir"]
    want = [p["label"] for p in predict(run, [photos / "val"], weights_dir=str(SHARED_WEIGHTS))]
    empty = tmp_path / "no_weights"
    empty.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(empty))
    monkeypatch.delenv("TRANSFER_WEIGHTS_DIR", raising=False)

    def offline(backbone, size):
        raise PipelineError("could not download ImageNet weights (offline)")

    monkeypatch.setattr(backbones, "_download", offline)
    assert [p["label"] for p in predict(run, [photos / "val"], weights_dir=str(empty))] == want
    with pytest.raises(PipelineError, match="could not download"):  # TensorFlow needs the file itself
        predict(run, [photos / "val"], weights_dir=str(empty), runtime="tensorflow")
    (tmp_path / "cache" / "models").rename(tmp_path / "elsewhere")  # nothing converted: the file is needed
    with pytest.raises(PipelineError, match="could not download"):
        predict(run, [photos / "val"], weights_dir=str(empty))
    with pytest.raises(PipelineError, match="not on this machine"):  # never a silent base with random weights
        backbones.build(backbones.get("mobilenet_025"), 96, "avg", backbones.Weights("imagenet", None, "0" * 64))


def test_a_process_traces_each_forward_pass_once():
    from dataclasses import replace

    from pipeline.engines import FrozenBase
    from pipeline.runtimes.tensorflow import TensorFlowRuntime

    job = FrozenBase(backbones.get("mobilenet_025"), 32, "avg", "backbone", "float32",
                     backbones.Weights("none", None, "none"), batch_size=2)
    a, b, c = TensorFlowRuntime(job), TensorFlowRuntime(job), TensorFlowRuntime(replace(job, batch_size=3))
    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(a.features(pixels), b.features(pixels))
    assert a._infer is b._infer and c.features(pixels).shape == (2, 256) and c._infer is not a._infer

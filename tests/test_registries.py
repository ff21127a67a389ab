"""Contracts driven by the registries, so that a new entry is tested the day it is added: every backbone
builds and preprocesses as Keras does, every export format reads back what it was given, and every engine
runs on every runtime with the same features."""

from __future__ import annotations

import importlib
import shutil

import numpy as np
import pytest

from helpers import COLORS, FAST_ARGS, make_image
from pipeline.parity import relative_diff
from pipeline import FeatureFile, backbones, extract
from pipeline.assemble import preprocessing_layers
from pipeline.engines import ENGINES
from pipeline.deploy.formats import FORMATS
from pipeline.deploy.exporting import judge
from pipeline.runtimes import RUNTIMES, onnx_cache

# The feature width of each keras.applications backbone (its last layer's channels): a new registry entry declares
# its own here. KerasHub encoders are built too large for this file; tests/test_hub_encoders.py shrinks each one.
KERAS = [name for name, spec in backbones.REGISTRY.items() if spec.library == "keras"]
WIDTHS = {"vgg16": 512, "vgg19": 512, "resnet50": 2048, "resnet50v2": 2048, "mobilenet": 1024,
          "mobilenet_050": 512, "mobilenet_025": 256, "mobilenet_v2": 1280, "efficientnetb0": 1280,
          "efficientnetb3": 1536, "efficientnetv2_b0": 1280, "convnext_tiny": 768, "inception_v3": 2048,
          "densenet121": 1024, "densenet169": 1664}


def test_every_backbone_declares_its_feature_width():
    assert set(WIDTHS) == set(KERAS)


@pytest.mark.parametrize("name", KERAS)
def test_every_backbone_builds_at_its_smallest_size_with_its_width(name):
    spec = backbones.get(name)
    model = backbones.build(spec, spec.min_size, "avg", backbones.resolve_weights(spec, spec.min_size, "none"))
    assert model.output_shape == (None, WIDTHS[name]) and not model.trainable
    assert spec.mode in ("caffe", "tf", "torch", "identity") and spec.weights_filename(spec.min_size).endswith(".h5")
    assert backbones.check_size(spec, None) == spec.default_size >= spec.min_size


@pytest.mark.parametrize("name", KERAS)
def test_every_backbone_preprocesses_as_its_keras_module(name):
    import keras

    spec = backbones.get(name)
    module = importlib.import_module(getattr(keras.applications, spec.constructor).__module__)
    x = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    expected = np.asarray(module.preprocess_input(x.copy()))
    out = x
    for layer in preprocessing_layers(spec, "backbone"):
        out = np.asarray(layer(out))
    np.testing.assert_allclose(out, expected, atol=1e-4)
    rescaled = preprocessing_layers(spec, "rescale")[0](x)
    np.testing.assert_allclose(np.asarray(rescaled), x / 255, atol=1e-6)


SIZE = 16


@pytest.fixture(scope="module")
def pixels(tmp_path_factory) -> np.ndarray:
    """Float32 RGB 0..255 of 12 noisy blue and 12 noisy red pictures at 16 px."""
    from pipeline.images import decode_all

    root = tmp_path_factory.mktemp("pixels")
    files = [str(make_image(root / f"{label}{i}.png", color, seed=i, size=(SIZE, SIZE)))
             for label, color in COLORS.items() for i in range(12)]
    return decode_all(files, SIZE)[0].astype(np.float32)


@pytest.fixture(scope="module")
def end_to_end(pixels):
    """A model shaped like an export (pixels 0..255 in, preprocessing, a convolution, pooling, a softmax layer
    named ``probabilities``) that tells red from blue with probabilities between about 0.1 and 0.9."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    x = inputs
    for layer in preprocessing_layers(backbones.get("mobilenet_v2"), "backbone"):
        x = layer(x)
    conv = keras.layers.Conv2D(3, 1, activation="relu")
    x = keras.layers.GlobalAveragePooling2D()(conv(x))
    dense = keras.layers.Dense(2, activation="softmax", name="probabilities")
    model = keras.Model(inputs, dense(x))
    conv.set_weights([np.eye(3, dtype="float32")[None, None], np.ones(3, "float32")])  # RGB kept, shifted to 0..2
    dense.set_weights([np.array([[-0.5, 0.5], [0, 0], [0.5, -0.5]], "float32"), np.zeros(2, "float32")])
    probabilities = model.predict(pixels, verbose=0)
    assert 0.05 < probabilities.min() and probabilities.max() < 0.95 and (probabilities.argmax(1) == [0] * 12 + [1] * 12).all()
    return model, probabilities


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_export_format_reads_back_as_the_keras_model(name, end_to_end, pixels, tmp_path):
    model, expected = end_to_end
    fmt = FORMATS[name]
    path = tmp_path / f"model{fmt.suffix}"
    assert fmt.output_problem(path) == ""
    assert fmt.labels_path(path) == (path if not fmt.suffix else tmp_path) / "labels.txt"
    fmt.write(model, path, ["blue", "red"], [pixels[:12], pixels[12:]] if fmt.calibrated else None)
    got = fmt.load(path)(pixels)
    assert got.shape == expected.shape and got.dtype == np.float32
    check = judge(fmt, expected, got, fmt.tolerance)  # raises when out of the format's tolerance or top-1 floor
    assert check["top1_agreement"] >= fmt.min_top1 and (fmt.tolerance is None or check["max_prob_diff"] <= fmt.tolerance)
    if fmt.tolerance is None:
        assert fmt.calibrated and fmt.input_dtype == "uint8"


@pytest.fixture(scope="session")  # not module: the Ray tests, which need it too, run last
def local_tensorflow(tmp_path_factory) -> dict:
    """The tiny folder (with one unreadable file) extracted by the local engine on TensorFlow: the reference
    every engine and runtime must match; its cache folder's ``models`` holds the base converted to ONNX."""
    from helpers import TINY_COUNTS, make_folder

    root = tmp_path_factory.mktemp("contract")
    data = make_folder(root / "tiny", TINY_COUNTS)
    (data / "train" / "red" / "broken.png").write_bytes(b"<html>not a picture</html>")
    args = dict(FAST_ARGS, cache_dir=str(root / "cache"))
    reference = extract(data, **args, runtime="tensorflow")
    converted = extract(data, **{**args, "cache_dir": str(root / "onnx")}, runtime="onnx")
    assert converted["runtime"] == "onnx", converted["notes"]
    return {"data": data, "reference": reference, "models": root / "onnx" / "models"}


def rows(summary: dict) -> dict:
    """``{(split, path): (label, features)}`` of a feature file."""
    with FeatureFile(summary["cache"]) as f:
        return {(s, p): (y, x) for s in f.splits
                for p, y, x in zip(f.column(s, "paths"), f.column(s, "labels"), f.features(s)[()])}


@pytest.mark.parametrize("runtime", list(RUNTIMES))
@pytest.mark.parametrize("engine", list(ENGINES))
def test_every_engine_on_every_runtime_computes_the_reference_features(engine, runtime, local_tensorflow, tmp_path,
                                                                       request):
    if engine == "ray":
        pytest.importorskip("ray.data", reason="Ray Data not installed (pip install -e '.[ray]')")
        request.getfixturevalue("ray_address")
    shutil.copytree(local_tensorflow["models"], tmp_path / "cache" / "models")  # converted once per session
    s = extract(local_tensorflow["data"], **FAST_ARGS, cache_dir=str(tmp_path / "cache"), engine=engine,
                runtime=runtime)
    reference = local_tensorflow["reference"]
    assert s["runtime"] == runtime and s["computed"] == reference["computed"] == 22
    assert [x["path"] for x in s["skipped"]] == ["train/red/broken.png"]
    got, want = rows(s), rows(reference)
    assert got.keys() == want.keys() and all(got[k][0] == want[k][0] for k in want)
    keys = sorted(want)
    difference = relative_diff(np.stack([want[k][1] for k in keys]), np.stack([got[k][1] for k in keys]))
    assert difference <= (0 if (engine, runtime) == ("local", "tensorflow") else onnx_cache.TOLERANCE)

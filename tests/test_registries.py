"""Contracts driven by the registries, so that a new entry is tested the day it is added: every backbone
builds and preprocesses as Keras does, and every export format reads back what it was given. (Every engine on
every runtime: ``test_engines.py``, beside the other tests on Ray.)"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from helpers import COLORS, make_image
from pipeline import backbones
from pipeline.assemble import preprocessing_layers
from pipeline.deploy.formats import FORMATS
from pipeline.deploy.exporting import judge

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


def test_a_process_keeps_its_last_frozen_bases_and_a_caller_may_build_its_own():
    spec, none = backbones.get("mobilenet_025"), backbones.Weights("none", None, "none")
    first = backbones.build(spec, 32, "avg", none)
    assert backbones.build(spec, 32, "avg", none) is first
    own = backbones.build(spec, 32, "avg", none, own=True)
    assert own is not first and own is not backbones.build(spec, 32, "avg", none, own=True)
    others = [backbones.build(spec, 32, pooling, none) for pooling in ("max", "none")[:backbones.KEPT_BASES]]
    assert first not in others and backbones.build(spec, 32, "avg", none) is not first  # the oldest let go


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

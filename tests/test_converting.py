"""ONNX files compute what the Keras model computes: end-to-end models (preprocessing layers, a frozen base, a
head) and bare bases (pooled vectors, unpooled maps); bad ONNX and TFLite files are refused clearly. (TFLite
files, float, float16 and int8, are checked against predict where export writes them: ``test_export.py``.)"""

from __future__ import annotations

import numpy as np
import pytest

from helpers import SHARED_DATA, SHARED_WEIGHTS, needs_shared
from pipeline import backbones
from pipeline.deploy import converting
from pipeline.deploy.tolerances import TOLERANCES
from pipeline.parity import relative_diff, top1_agreement
from pipeline.errors import PipelineError
from pipeline.assemble import assemble
from pipeline.images import load_image

pytestmark = pytest.mark.slow  # together a minute or more: started first (conftest.py)

SIZE = 96
FLOAT32_TOL = TOLERANCES["onnx"]  # max |a - b| / max |a|; measured here 4e-6


def _photos(split: str, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``per_class`` hymenoptera photos of each class, float32 pixels at ``SIZE`` px, and labels."""
    pixels, labels = [], []
    for label, cls in enumerate(["ants", "bees"]):
        files = sorted((SHARED_DATA / "hymenoptera" / split / cls).iterdir())
        loaded = (load_image(str(f), SIZE)[0] for f in files)
        chosen = [p for p in loaded if p is not None][:per_class]
        pixels += chosen
        labels += [label] * len(chosen)
    return np.stack(pixels).astype(np.float32), np.array(labels)


def _base(name: str, size: int, pooling: str, weights: str = "none"):
    """A preprocessing + frozen base functional model, as :func:`pipeline.assemble.assemble` builds it."""
    spec = backbones.get(name)
    return assemble(spec, size, pooling, backbones.resolve_weights(spec, size, weights, str(SHARED_WEIGHTS)),
                    "backbone")[0]


@pytest.fixture(scope="module")
def tiny():
    """MobileNet alpha 0.25 (ImageNet weights) at 96 px with a logistic regression head fitted on 40 train
    photos per class, as one Keras model; val photos to check it on."""
    import keras
    from sklearn.linear_model import LogisticRegression

    features = _base("mobilenet_025", SIZE, "avg", str(SHARED_WEIGHTS / "mobilenet_2_5_224_tf_no_top.h5"))
    X, y = _photos("train", 40)
    logreg = LogisticRegression(C=0.1, max_iter=2000).fit(features.predict(X, verbose=0), y)
    head = keras.layers.Dense(2, activation="softmax")
    head.build((None, features.output_shape[-1]))
    head.set_weights([np.hstack([np.zeros_like(logreg.coef_.T), logreg.coef_.T]), np.r_[0.0, logreg.intercept_]])
    model = keras.Model(features.input, head(features.output))
    val, val_y = _photos("val", 40)
    return model, X, val, val_y


@pytest.fixture(scope="module")
def vgg_onnx(tmp_path_factory):
    """Random VGG16 at 32 px: caffe BGR/mean Dense in front, unpooled maps into a Sequential dense head
    (adapted Normalization, Flatten, Dense, Dropout, softmax); its ONNX file."""
    import keras

    features = _base("vgg16", 32, "none")
    x = np.random.default_rng(0).uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
    norm = keras.layers.Normalization()
    norm.adapt(features.predict(x, verbose=0))
    head = keras.Sequential([keras.Input(features.output_shape[1:]), norm, keras.layers.Flatten(),
                             keras.layers.Dense(16, activation="relu"), keras.layers.Dropout(0.5),
                             keras.layers.Dense(3, activation="softmax")])
    model = keras.Model(features.input, head(features.output))
    path = converting.to_onnx(model, tmp_path_factory.mktemp("vgg") / "vgg.onnx")
    return model, path, x


def test_onnx_vgg16_caffe_maps_dense_head(vgg_onnx):
    model, path, x = vgg_onnx
    session = converting.onnx_session(path, threads=1, input_shape=(32, 32, 3))
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("image", ["batch", 32, 32, 3])]
    expected = model.predict(x, verbose=0)
    assert expected.std(0).max() > 1e-3  # the random head does not give every picture the same probabilities
    assert relative_diff(expected, converting.run_onnx(session, x)) <= FLOAT32_TOL
    assert relative_diff(expected[:1], converting.run_onnx(session, x[:1])) <= FLOAT32_TOL
    assert [p.name for p in path.parent.iterdir()] == ["vgg.onnx"]  # the temporary file was renamed away


def test_bad_onnx_files_are_refused(vgg_onnx, tmp_path):
    _, path, _ = vgg_onnx
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(PipelineError, match="not a usable ONNX model"):
        converting.onnx_session(truncated)
    with pytest.raises(PipelineError, match="not found"):
        converting.onnx_session(tmp_path / "missing.onnx")
    with pytest.raises(PipelineError, match=r"expected one float32 input \(batch, 64, 64, 3\)"):
        converting.onnx_session(path, input_shape=(64, 64, 3))


def test_only_image_models_convert(tmp_path):
    import keras

    inputs = keras.Input((10,))
    with pytest.raises(PipelineError, match=r"needs float32 \(None, H, W, 3\)"):
        converting.to_onnx(keras.Model(inputs, keras.layers.Dense(2)(inputs)), tmp_path / "x.onnx")
    with pytest.raises(PipelineError, match="needs calibration"):
        converting.to_tflite(keras.Model(inputs, inputs), tmp_path / "x.tflite", quantize="int8")


def test_parity_helpers():
    a = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert top1_agreement(a, a[:, ::-1]) == 0.0
    assert relative_diff(100 * a, 100 * a + 1) == pytest.approx(1 / 90)  
    assert relative_diff(a, a + 0.01) == pytest.approx(0.01 / 0.9)  # relative below scale 1 too
    assert not relative_diff(a, a * np.nan) <= 1e-3  # NaN is never within a tolerance
    with pytest.raises(PipelineError, match="differ in shape"):
        relative_diff(a, a[:1])


@needs_shared
def test_onnx_equals_keras_on_photos(tiny, tmp_path):
    model, _, val, val_y = tiny
    expected = model.predict(val, verbose=0)
    assert (expected.argmax(1) == val_y).mean() >= 0.6  # the head learned something (chance: 0.5)
    session = converting.onnx_session(converting.to_onnx(model, tmp_path / "m.onnx"), input_shape=(SIZE, SIZE, 3))
    assert relative_diff(expected, converting.run_onnx(session, val)) <= FLOAT32_TOL


@needs_shared
def test_onnx_unpooled_maps_equal_keras(tmp_path):
    model = _base("mobilenet_025", SIZE, "none", str(SHARED_WEIGHTS / "mobilenet_2_5_224_tf_no_top.h5"))
    x, _ = _photos("val", 4)
    expected = model.predict(x, verbose=0)
    session = converting.onnx_session(converting.to_onnx(model, tmp_path / "maps.onnx"))
    got = converting.run_onnx(session, x)
    assert got.shape == expected.shape == (8, 3, 3, 256)
    assert relative_diff(expected, got) <= FLOAT32_TOL


def test_bad_tflite_files_are_refused(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"TFL3" + bytes(100))
    with pytest.raises(PipelineError, match="not a usable TFLite model"):
        converting.tflite_runner(bad)
    with pytest.raises(PipelineError, match="not found"):
        converting.tflite_runner(tmp_path / "missing.tflite")

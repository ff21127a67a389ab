"""One Keras model from raw RGB pixels to class probabilities: preprocessing, frozen base, pooling, head.

Input: float32 RGB in 0..255 at the backbone's input size. Preprocessing is made of stock Keras layers
(``Rescaling``, ``Normalization``, a fixed ``Dense`` for caffe's RGB->BGR and mean subtraction), so the
file loads with ``safe_mode=True`` and nothing of this package. Heads inside: ``dense`` as trained,
``logreg`` and ``svm`` as ``Dense`` layers with the standardization folded in; ``knn`` cannot be
expressed as layers and is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import PipelineError
from .runs import Run, open_run

# keras.applications module -> its preprocess_input mode
MODES = {"vgg16": "caffe", "vgg19": "caffe", "resnet": "caffe", "resnet_v2": "tf", "mobilenet": "tf",
         "mobilenet_v2": "tf", "inception_v3": "tf", "efficientnet": "identity", "densenet": "torch"}
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
TORCH_MEAN, TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FORMATS = ("keras", "savedmodel")


def _fixed_dense(kernel: np.ndarray, bias: np.ndarray, name: str, activation: str | None = None):
    import keras

    layer = keras.layers.Dense(kernel.shape[1], activation=activation, name=name, trainable=False)
    layer.build((None, kernel.shape[0]))
    layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return layer


def preprocessing_layers(module: str, preprocess: str) -> list:
    """Keras layers equal to ``keras.applications.<module>.preprocess_input`` (or ``x / 255``)."""
    import keras

    if preprocess == "rescale":
        return [keras.layers.Rescaling(1 / 255, name="rescale")]
    mode = MODES.get(module)
    if mode == "tf":
        return [keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")]
    if mode == "caffe":  # RGB -> BGR, then subtract the ImageNet mean
        return [_fixed_dense(np.eye(3)[:, ::-1], -np.array(CAFFE_BGR_MEAN), "preprocess")]
    if mode == "torch":
        return [keras.layers.Rescaling(1 / 255, name="rescale"),
                keras.layers.Normalization(mean=TORCH_MEAN, variance=np.square(TORCH_STD), name="preprocess")]
    if mode == "identity":
        return []
    raise PipelineError(f"no export preprocessing for keras.applications.{module}")


def _softmax_dense(coef: np.ndarray, intercept: np.ndarray, name: str):
    """A linear model's probabilities as one softmax layer (binary: softmax over [0, z] = sigmoid)."""
    if coef.shape[0] == 1:
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    return _fixed_dense(coef.T, intercept, name, activation="softmax")


def _fold(scaler, coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``coef @ ((x - mean) / scale) + b`` as ``coef' @ x + b'``."""
    folded = coef / scaler.scale_[None, :]
    return folded, intercept - folded @ scaler.mean_


def head_layers(run: Run) -> list:
    """The run's fitted head as Keras layers taking the base's output."""
    import keras

    name, head = run.config["head"], run.head()
    flatten = [keras.layers.Flatten(name="flatten")] if len(run.config["feature_shape"]) > 1 else []
    if name == "dense":
        return [head.model_]
    if name == "logreg":
        return flatten + [_softmax_dense(*_fold(head.scaler_, head.model_.coef_, head.model_.intercept_), "probabilities")]
    if name == "svm":
        coef, intercept = _fold(head.scaler_, head.svc_.coef_, head.svc_.intercept_)
        return flatten + [_fixed_dense(coef.T, intercept, "svm_decision"),
                          _softmax_dense(head.calibrator_.coef_, head.calibrator_.intercept_, "probabilities")]
    raise PipelineError(f"a {name} head cannot be exported as Keras layers; train --head logreg, svm or dense "
                        "and export that run (or use `transfer predict` with this one)")


def build_model(run_dir: str | os.PathLike, weights_dir: str | None = None):
    """The end-to-end ``keras.Model``: float32 RGB 0..255 (size, size, 3) -> class probabilities."""
    import keras

    from . import backbones
    from .prediction import recorded_backbone

    run = open_run(run_dir)
    features = run.features
    layers = head_layers(run)  # refuses knn before the base is built
    spec, weights = recorded_backbone(features, weights_dir)
    size = int(features["input_size"])
    base = backbones.build(spec, size, features["pooling"], weights, features.get("precision", "float32"))
    inputs = keras.Input((size, size, 3), dtype="float32", name="image")
    x = inputs
    for layer in preprocessing_layers(spec.module, features["preprocess"]) + [base] + layers:
        x = layer(x)
    return keras.Model(inputs, x, name=f"{spec.name}_{run.config['head']}")


def export(run_dir: str | os.PathLike, output: str | os.PathLike, format: str = "keras",
           weights_dir: str | None = None) -> dict:
    """Write the end-to-end model as ``.keras`` (load with ``keras.saving.load_model``) or a SavedModel
    folder (for TF Serving; signature ``serve``). Returns ``output``, ``format``, ``input_shape``, ``classes``.

    Examples
    --------
    >>> export("runs/urban_rural-mobilenet_v2-160-avg-logreg-20250101-120000", "model.keras")  # doctest: +SKIP
    """
    if format not in FORMATS:
        raise PipelineError(f"--format {format!r} is not one of: {', '.join(FORMATS)}")
    output = Path(output)
    if format == "keras" and output.suffix != ".keras":
        raise PipelineError(f"--output {output} must end in .keras for --format keras")
    model = build_model(run_dir, weights_dir)
    output.parent.mkdir(parents=True, exist_ok=True)
    if format == "keras":
        model.save(output)
    else:
        model.export(str(output), format="tf_saved_model", verbose=False)
    return {"output": str(output), "format": format, "input_shape": list(model.input_shape[1:]),
            "classes": open_run(run_dir).classes}

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
from .layers import fixed_dense
from .runs import Run, open_run

# keras.applications module -> its preprocess_input mode
MODES = {"vgg16": "caffe", "vgg19": "caffe", "resnet": "caffe", "resnet_v2": "tf", "mobilenet": "tf",
         "mobilenet_v2": "tf", "inception_v3": "tf", "efficientnet": "identity", "densenet": "torch"}
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
TORCH_MEAN, TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FORMATS = ("keras", "savedmodel")


def preprocessing_layers(module: str, preprocess: str) -> list:
    """Keras layers equal to ``keras.applications.<module>.preprocess_input`` (or ``x / 255``)."""
    import keras

    if preprocess == "rescale":
        return [keras.layers.Rescaling(1 / 255, name="rescale")]
    mode = MODES.get(module)
    if mode == "tf":
        return [keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")]
    if mode == "caffe":  # RGB -> BGR, then subtract the ImageNet mean
        return [fixed_dense(np.eye(3)[:, ::-1], -np.array(CAFFE_BGR_MEAN), "preprocess")]
    if mode == "torch":
        return [keras.layers.Rescaling(1 / 255, name="rescale"),
                keras.layers.Normalization(mean=TORCH_MEAN, variance=np.square(TORCH_STD), name="preprocess")]
    if mode == "identity":
        return []
    raise PipelineError(f"no export preprocessing for keras.applications.{module}")


def head_layers(run: Run) -> list:
    """The run's fitted head as Keras layers taking the base's output."""
    return run.head().export_layers(run.config["feature_shape"])


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

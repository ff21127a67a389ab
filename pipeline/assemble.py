"""The one place that builds a model: (augmentation +) preprocessing + frozen base + pooling (+ head).

Input is float32 RGB in 0..255 at the backbone's input size. Preprocessing is made of stock Keras layers
(``Rescaling``, a fixed ``Dense`` for caffe's RGB->BGR and mean subtraction), so a saved model loads with
``safe_mode=True`` and nothing of this package. Stage one's forward pass, prediction, export and fine-tuning
all assemble their model here, so their features agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from . import backbones
from .backbones import Backbone, Weights
from .errors import PipelineError

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
TORCH_RGB_MEAN = (0.485, 0.456, 0.406)  # of pixels scaled to 0..1
TORCH_RGB_STD = (0.229, 0.224, 0.225)


def preprocessing_layers(backbone: Backbone, preprocess: str) -> list:
    """Keras layers equal to the backbone's ``preprocess_input`` (or ``x / 255`` for ``rescale``)."""
    import keras

    from ._fixed_dense import fixed_dense

    if preprocess == "rescale":
        return [keras.layers.Rescaling(1 / 255, name="rescale")]
    if backbone.mode == "tf":
        return [keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")]
    if backbone.mode == "caffe":  # RGB -> BGR, then subtract the ImageNet mean
        return [fixed_dense(np.eye(3)[:, ::-1], -np.array(CAFFE_BGR_MEAN), "preprocess")]
    if backbone.mode in ("torch", "normalize"):  # x / 255, then a mean and std per channel
        mean, std = (TORCH_RGB_MEAN, TORCH_RGB_STD) if backbone.mode == "torch" else (backbone.mean, backbone.std)
        return [fixed_dense(np.diag(1 / (255 * np.array(std))), -np.array(mean) / np.array(std), "preprocess")]
    return []  # 'identity': the base normalizes its input itself


def assemble(backbone: Backbone, size: int, pooling: str, weights: Weights, preprocess: str,
             precision: str = "float32", head: Sequence = (), augment: Sequence = (), name: str | None = None,
             own_base: bool = False):
    """``(model, base)``: pixels -> ``augment`` layers -> preprocessing -> frozen base -> ``head`` layers.

    Without a head the model gives the features stage one caches. The base is the process's shared copy
    (:func:`pipeline.backbones.build`) unless ``own_base``.
    """
    import keras

    base = backbones.build(backbone, size, pooling, weights, precision, own=own_base)
    inputs = keras.Input((size, size, 3), dtype="float32", name="image")
    x = inputs
    for layer in [*augment, *preprocessing_layers(backbone, preprocess), base, *head]:
        x = layer(x)
    return keras.Model(inputs, x, name=name or f"{backbone.name}_features"), base


def recorded_backbone(features: Mapping, weights_dir: str | None = None) -> tuple[Backbone, Weights]:
    """The backbone and weights a run's features came from; the weights file must be the very same one."""
    spec = backbones.get(features["backbone"])
    if spec.constructor == "onnx":
        return _recorded_encoder(features)
    if features["weights"] == "none":
        raise PipelineError("these features came from random weights (--weights none), which cannot be rebuilt for "
                            "new images; extract with --weights imagenet or a weights file and train again")
    weights = backbones.resolve_weights(spec, int(features["input_size"]), features["weights"], weights_dir)
    if weights.sha256 != features["weights_sha256"]:
        raise PipelineError(f"weights file {weights.path} (sha256 {weights.sha256[:12]}...) is not the one the features "
                            f"were made with (sha256 {features['weights_sha256'][:12]}...); pass --weights-dir with that file")
    return spec, weights


def _recorded_encoder(features: Mapping) -> tuple[Backbone, Weights]:
    """The ONNX encoder a run's features came from: the recorded file, with the same sha256 and settings."""
    from . import onnx_encoder

    path = features["weights"]
    if not Path(path).is_file():
        raise PipelineError(f"the ONNX encoder {path} these features came from is not on this machine; put it (and "
                            "its JSON) back at that path")
    spec = onnx_encoder.load(path)
    if spec.kwargs["sha256"] != features["weights_sha256"] or spec.name != features["backbone"]:
        raise PipelineError(f"the ONNX encoder {path} or its JSON changed since the features were made "
                            f"({spec.name} now, {features['backbone']} then); extract again")
    return spec, backbones.resolve_weights(spec, spec.default_size)


def assemble_recorded(features: Mapping, weights_dir: str | None = None, head: Sequence = (),
                      augment: Sequence = (), name: str | None = None, own_base: bool = False):
    """:func:`assemble` for the features a run recorded (``run.features``)."""
    spec, weights = recorded_backbone(features, weights_dir)
    return assemble(spec, int(features["input_size"]), features["pooling"], weights, features["preprocess"],
                    features.get("precision") or "float32", head, augment, name, own_base)

"""One registry of frozen ImageNet backbones: constructor, preprocessing, sizes, weights files.

Nothing here imports TensorFlow until a model is actually built.
"""

from __future__ import annotations

import difflib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from .hashing import file_sha256
from .errors import PipelineError

POOLINGS = ("avg", "max", "none")
PREPROCESSINGS = ("backbone", "rescale")


@dataclass(frozen=True)
class Backbone:
    """How to build one ``keras.applications`` base with ``include_top=False``."""

    name: str
    module: str  # keras.applications submodule holding preprocess_input
    constructor: str
    default_size: int
    min_size: int = 32
    kwargs: dict = field(default_factory=dict)
    weights_file: str = ""  # Keras's own file name for the no-top ImageNet weights; {size} if per size

    def weights_filename(self, size: int) -> str:
        return self.weights_file.format(size=size)

    def fallback_filename(self) -> str:
        """The file Keras uses for sizes it has no weights for (the 224 px one)."""
        return self.weights_file.format(size=224)


def _mobilenet(name: str, alpha: float, alpha_text: str) -> Backbone:
    return Backbone(name, "mobilenet", "MobileNet", 224, kwargs={"alpha": alpha},
                    weights_file=f"mobilenet_{alpha_text}_{{size}}_tf_no_top.h5")


REGISTRY: dict[str, Backbone] = {b.name: b for b in [
    Backbone("vgg16", "vgg16", "VGG16", 224, weights_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    Backbone("vgg19", "vgg19", "VGG19", 224, weights_file="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    Backbone("resnet50", "resnet", "ResNet50", 224, weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    Backbone("resnet50v2", "resnet_v2", "ResNet50V2", 224,
             weights_file="resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    _mobilenet("mobilenet", 1.0, "1_0"),
    _mobilenet("mobilenet_050", 0.5, "5_0"),
    _mobilenet("mobilenet_025", 0.25, "2_5"),
    Backbone("mobilenet_v2", "mobilenet_v2", "MobileNetV2", 224, kwargs={"alpha": 1.0},
             weights_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5"),
    Backbone("efficientnetb0", "efficientnet", "EfficientNetB0", 224, weights_file="efficientnetb0_notop.h5"),
    Backbone("efficientnetb3", "efficientnet", "EfficientNetB3", 300, weights_file="efficientnetb3_notop.h5"),
    Backbone("inception_v3", "inception_v3", "InceptionV3", 299, min_size=75,
             weights_file="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
]}


def get(name: str) -> Backbone:
    """The registry entry for ``name``, or an error listing the known names and the closest one."""
    key = name.lower().replace("-", "_")
    if key in REGISTRY:
        return REGISTRY[key]
    close = difflib.get_close_matches(key, REGISTRY, n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    raise PipelineError(f"unknown backbone {name!r}.{hint} Known: {', '.join(REGISTRY)}")


def check_size(backbone: Backbone, size: int | None) -> int:
    size = size or backbone.default_size
    if size < backbone.min_size:
        raise PipelineError(f"--image-size {size} is below {backbone.name}'s minimum of {backbone.min_size} px")
    return size


@dataclass(frozen=True)
class Weights:
    """Resolved weights: what the user asked for, the file used (if any) and its sha256."""

    spec: str  # 'imagenet', 'none' or a path
    path: str | None
    sha256: str
    note: str = ""


def _keras_cache_dir() -> Path:
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(base) / "models"


def _find_local(backbone: Backbone, size: int, weights_dir: str | None) -> tuple[Path | None, str]:
    dirs = [Path(d) for d in (weights_dir, os.environ.get("TRANSFER_WEIGHTS_DIR")) if d]
    dirs.append(_keras_cache_dir())
    exact, fallback = backbone.weights_filename(size), backbone.fallback_filename()
    for d in dirs:
        if (d / exact).is_file():
            return d / exact, ""
    for d in dirs:
        if fallback != exact and (d / fallback).is_file():
            return d / fallback, f"no {size} px ImageNet weights for {backbone.name}; using the 224 px file {fallback}"
    return None, ""


def resolve_weights(backbone: Backbone, size: int, weights: str = "imagenet", weights_dir: str | None = None) -> Weights:
    """Turn ``imagenet`` / ``none`` / a path into a concrete file and its sha256.

    ``imagenet`` looks first in ``weights_dir``, ``$TRANSFER_WEIGHTS_DIR`` and the Keras cache for the
    file Keras would download, and downloads it (as Keras does) only when none has it.
    """
    spec = str(weights)
    if spec.lower() == "none":
        return Weights("none", None, "none")
    if spec.lower() != "imagenet":
        path = Path(spec)
        if not path.is_file():
            raise PipelineError(f"weights file not found: {spec} (pass imagenet, none or the path of a .h5 file)")
        return Weights(str(path.resolve()), str(path.resolve()), file_sha256(path))
    path, note = _find_local(backbone, size, weights_dir)
    if path is None:
        path = _download(backbone, size)
    return Weights("imagenet", str(Path(path).resolve()), file_sha256(path), note)


def _download(backbone: Backbone, size: int) -> Path:
    import keras

    name = backbone.weights_filename(size)
    base = {
        "mobilenet": "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/",
        "mobilenet_v2": "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/",
        "efficientnet": "https://storage.googleapis.com/keras-applications/",
        "inception_v3": "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/",
    }.get(backbone.module, "https://storage.googleapis.com/tensorflow/keras-applications/" + backbone.module.split("_")[0] + "/")
    try:
        return Path(keras.utils.get_file(name, base + name, cache_subdir="models"))
    except Exception as exc:  # network errors come in many types
        raise PipelineError(
            f"could not download ImageNet weights {name} ({exc}); on an offline machine put the file in a folder "
            "and pass --weights-dir DIR (or set TRANSFER_WEIGHTS_DIR), or pass --weights PATH") from None


def build(backbone: Backbone, size: int, pooling: str, weights: Weights, precision: str = "float32"):
    """The frozen Keras base (``include_top=False``), pooled or not, with the resolved weights loaded."""
    import keras

    state = random.getstate()
    random.seed(0)  # Keras draws initializer seeds from `random`: weights 'none' are the same in every run
    try:
        ctor = getattr(keras.applications, backbone.constructor)
        model = ctor(include_top=False, weights=None, input_shape=(size, size, 3),
                     pooling=None if pooling == "none" else pooling, **backbone.kwargs)
    finally:
        random.setstate(state)
    if precision == "bfloat16":
        _convolutions_in_bfloat16(model)
    if weights.path:
        try:
            model.load_weights(weights.path)
        except Exception as exc:
            raise PipelineError(f"weights file {weights.path} does not fit {backbone.name} without top: {exc}") from None
    model.trainable = False
    return model


def _convolutions_in_bfloat16(model) -> None:
    """Full convolutions compute in bfloat16 (float32 weights); everything between them stays float32.

    Batch normalization, depthwise convolutions, activations and residual sums in bfloat16 (Keras's global
    ``mixed_bfloat16``) moved MobileNetV2's features three times as far from float32 for no speed."""
    import keras

    for layer in model.layers:
        if type(layer) in (keras.layers.Conv2D, keras.layers.Dense):
            layer.dtype_policy = keras.DTypePolicy("mixed_bfloat16")


def preprocess_fn(backbone: Backbone, preprocess: str):
    """A function from float32 RGB in 0..255 to the backbone's expected input."""
    if preprocess == "rescale":
        return lambda x: x / 255.0
    import importlib

    module = importlib.import_module(f"keras.applications.{backbone.module}")
    return module.preprocess_input

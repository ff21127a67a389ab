"""One registry of frozen pretrained backbones: constructor, preprocessing mode, sizes, weights file and URL.

Adding a ``keras.applications`` backbone or a KerasHub image encoder (:mod:`pipeline.hub`) is one
:data:`REGISTRY` entry; an encoder brought as an ONNX file is looked up by its path (:mod:`pipeline.onnx_encoder`).
docs/backbones.md lists them with their preprocessing, pooling and weights.

Nothing here imports TensorFlow until a model is actually built.
"""

from __future__ import annotations

import difflib
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from ._kept import Kept
from .hashing import file_sha256
from .errors import PipelineError

@dataclass(frozen=True)
class Backbone:
    """Everything about one base: its constructor (a ``keras.applications`` one with ``include_top=False``, or a
    KerasHub class), the ``preprocess_input`` it expects (as a mode :mod:`pipeline.assemble` turns into layers),
    its sizes and where its ImageNet weights come from (``{size}`` in the URL for per-size Keras files; for
    KerasHub, the preset's name)."""

    name: str
    constructor: str
    mode: str  # preprocess_input: 'caffe' (BGR, ImageNet mean), 'tf' (-1..1), 'torch' (0..1, ImageNet mean/std),
    #            'normalize' (0..1, then the entry's mean/std) or 'identity' (inside the model)
    default_size: int
    weights_url: str
    min_size: int = 32
    max_size: int = 1024  # px; beyond it a batch of activations no longer fits a typical machine
    kwargs: dict = field(default_factory=dict)
    library: str = "keras"  # 'keras' (keras.applications) or 'keras_hub' (see pipeline.hub)
    size_step: int = 1  # sizes must be a multiple of it (a ViT's patch size)
    mean: tuple = ()  # mode 'normalize': per-channel mean and std of pixels scaled to 0..1
    std: tuple = ()
    token_pooling: str = ""  # a KerasHub encoder's pooled output: 'cls+mean', 'cls' or 'map' (see pipeline.hub)

    def weights_filename(self, size: int) -> str:
        """Keras's own file name for the no-top ImageNet weights at ``size``."""
        return self.weights_url.rsplit("/", 1)[-1].format(size=size)

    def fallback_filename(self) -> str:
        """The file Keras uses for sizes it has no weights for (the 224 px one)."""
        return self.weights_filename(224)


KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"


def _mobilenet(name: str, alpha: float, alpha_text: str) -> Backbone:
    return Backbone(name, "MobileNet", "tf", 224, f"{KERAS_APPS}mobilenet/mobilenet_{alpha_text}_{{size}}_tf_no_top.h5",
                    kwargs={"alpha": alpha})


REGISTRY: dict[str, Backbone] = {b.name: b for b in [
    Backbone("vgg16", "VGG16", "caffe", 224, f"{KERAS_APPS}vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    Backbone("vgg19", "VGG19", "caffe", 224, f"{KERAS_APPS}vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    Backbone("resnet50", "ResNet50", "caffe", 224,
             f"{KERAS_APPS}resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    Backbone("resnet50v2", "ResNet50V2", "tf", 224,
             f"{KERAS_APPS}resnet/resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    _mobilenet("mobilenet", 1.0, "1_0"),
    _mobilenet("mobilenet_050", 0.5, "5_0"),
    _mobilenet("mobilenet_025", 0.25, "2_5"),
    Backbone("mobilenet_v2", "MobileNetV2", "tf", 224,
             f"{KERAS_APPS}mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{{size}}_no_top.h5",
             kwargs={"alpha": 1.0}),
    Backbone("densenet121", "DenseNet121", "torch", 224,
             f"{KERAS_APPS}densenet/densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    Backbone("densenet169", "DenseNet169", "torch", 224,
             f"{KERAS_APPS}densenet/densenet169_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    Backbone("efficientnetb0", "EfficientNetB0", "identity", 224,
             "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5"),
    Backbone("efficientnetb3", "EfficientNetB3", "identity", 300,
             "https://storage.googleapis.com/keras-applications/efficientnetb3_notop.h5"),
    Backbone("efficientnetv2_b0", "EfficientNetV2B0", "identity", 224,
             f"{KERAS_APPS}efficientnet_v2/efficientnetv2-b0_notop.h5"),
    Backbone("convnext_tiny", "ConvNeXtTiny", "identity", 224, f"{KERAS_APPS}convnext/convnext_tiny_notop.h5"),
    Backbone("inception_v3", "InceptionV3", "tf", 299,
             f"{KERAS_APPS}inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", min_size=75),
]}


HUB = "keras_hub"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def _dinov2(name: str, hidden: int, heads: int) -> Backbone:
    sizes = dict(patch_size=14, num_layers=12, hidden_dim=hidden, num_heads=heads, intermediate_dim=4 * hidden,
                 layer_scale_init_value=1.0, position_embedding_shape=(518, 518, 3))
    return Backbone(name, "DINOV2Backbone", "normalize", 224, name, min_size=28, size_step=14, kwargs=sizes,
                    library=HUB, mean=IMAGENET_MEAN, std=IMAGENET_STD, token_pooling="cls+mean")


def _vit_b16(name: str, constructor: str, activation: str, mean: tuple, std: tuple, pooling: str) -> Backbone:
    sizes = dict(patch_size=16, num_layers=12, hidden_dim=768, num_heads=12, intermediate_dim=3072,
                 intermediate_activation=activation)
    return Backbone(name, constructor, "normalize", 224, name, min_size=32, size_step=16, kwargs=sizes, library=HUB,
                    mean=mean, std=std, token_pooling=pooling)


# KerasHub encoders: weights_url is the KerasHub preset; the sizes are the presets' own (their config.json)
REGISTRY.update({b.name: b for b in [
    _dinov2("dinov2_small", 384, 6),
    _dinov2("dinov2_base", 768, 12),
    _vit_b16("siglip2_base_patch16_224", "SigLIPVisionEncoder", "gelu_approximate", (0.5,) * 3, (0.5,) * 3, "map"),
    _vit_b16("clip_vit_base_patch16", "CLIPVisionEncoder", "quick_gelu", CLIP_MEAN, CLIP_STD, "cls"),
]})


def get(name: str) -> Backbone:
    """The registry entry for ``name``, an encoder brought as an ONNX file (a path ending in ``.onnx``, or the
    ``onnx-<hash>`` name a feature file records: see :mod:`pipeline.onnx_encoder`), or an error listing the
    known names and the closest one."""
    from . import onnx_encoder

    if str(name).lower().endswith(".onnx"):
        return onnx_encoder.load(name)
    if onnx_encoder.NAME.match(str(name)):
        return onnx_encoder.recorded(name)
    key = name.lower().replace("-", "_")
    if key in REGISTRY:
        return REGISTRY[key]
    close = difflib.get_close_matches(key, REGISTRY, n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    raise PipelineError(f"unknown backbone {name!r}.{hint} Known: {', '.join(REGISTRY)}")


def check_size(backbone: Backbone, size: int | None) -> int:
    """``size`` (the backbone's default when None), refused outside ``min_size``..``max_size``."""
    size = backbone.default_size if size is None else size
    if not backbone.min_size <= size <= backbone.max_size:
        raise PipelineError(f"--image-size {size} is outside {backbone.name}'s range of {backbone.min_size} to "
                            f"{backbone.max_size} px (its default is {backbone.default_size})")
    if size % backbone.size_step:
        raise PipelineError(f"--image-size {size} is not a multiple of {backbone.name}'s patch size "
                            f"{backbone.size_step} px (its default is {backbone.default_size})")
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
    if backbone.constructor == "onnx":  # an encoder brought as an ONNX file: the file is its weights
        return _encoder_weights(backbone, spec)
    if backbone.library == HUB and spec.lower() != "none":
        return _preset_weights(backbone, spec, weights_dir)
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


def _encoder_weights(backbone: Backbone, spec: str) -> Weights:
    if spec.lower() == "none":
        raise PipelineError(f"{backbone.name} is an encoder brought as an ONNX file: it has no random-weights "
                            "version; leave --weights at imagenet (the file's own)")
    path = backbone.kwargs["path"]
    if spec.lower() != "imagenet" and Path(spec).resolve() != Path(path):
        raise PipelineError(f"--weights {spec} does not apply to an ONNX encoder, whose weights are its file {path}")
    return Weights(path, path, backbone.kwargs["sha256"])


def _preset_weights(backbone: Backbone, spec: str, weights_dir: str | None) -> Weights:
    """A KerasHub preset folder: ``--weights DIR``, else ``<weights dir>/<preset>``, else KerasHub's download."""
    from .hub import WEIGHTS_FILE, download_preset

    if spec.lower() in ("imagenet", "pretrained"):
        dirs = [Path(d) / backbone.weights_url for d in (weights_dir, os.environ.get("TRANSFER_WEIGHTS_DIR")) if d]
        folder = next((d for d in dirs if (d / WEIGHTS_FILE).is_file()), None) or download_preset(backbone.weights_url)
        spec = "imagenet"
    else:
        folder = Path(spec)
    if not (folder / WEIGHTS_FILE).is_file():
        raise PipelineError(f"{folder} is not a KerasHub preset folder (no {WEIGHTS_FILE}); pass imagenet, none or "
                            "a preset folder")
    folder = folder.resolve()
    return Weights(spec if spec == "imagenet" else str(folder), str(folder), file_sha256(folder / WEIGHTS_FILE))


def _download(backbone: Backbone, size: int) -> Path:
    import keras

    name = backbone.weights_filename(size)
    try:
        return Path(keras.utils.get_file(name, backbone.weights_url.format(size=size), cache_subdir="models"))
    except Exception as exc:  # network errors come in many types
        raise PipelineError(
            f"could not download ImageNet weights {name} ({exc}); on an offline machine put the file in a folder "
            "and pass --weights-dir DIR (or set TRANSFER_WEIGHTS_DIR), or pass --weights PATH") from None


KEPT_BASES = 2  # the frozen bases a process keeps built (extract, predict and export in one session reuse them)
_kept = Kept(KEPT_BASES)


def build(backbone: Backbone, size: int, pooling: str, weights: Weights, precision: str = "float32",
          own: bool = False):
    """The frozen Keras base (``include_top=False``), pooled or not, with the resolved weights loaded.

    The process keeps the last :data:`KEPT_BASES` built and hands the same model out again for the same
    backbone, size, pooling, weights (by sha256) and precision: callers must not change it. ``own=True``
    builds a copy of the caller's own (fine-tuning trains its base)."""
    key = None if own else kept_key(backbone, size, pooling, weights, precision)
    return _kept.get(key, lambda: _build(backbone, size, pooling, weights, precision))


def kept_key(backbone: Backbone, size: int, pooling: str, weights: Weights, precision: str) -> tuple | None:
    """What tells one frozen base from another in a process; None for weights known by path alone (not kept)."""
    if not weights.sha256:
        return None
    return repr(backbone), size, pooling, weights.spec, weights.path, weights.sha256, precision


def _build(backbone: Backbone, size: int, pooling: str, weights: Weights, precision: str):
    if backbone.constructor == "onnx":
        raise PipelineError(f"{backbone.name} is an encoder brought as an ONNX file: it runs on ONNX Runtime only, "
                            "so --runtime tensorflow, --precision bfloat16, finetune and Keras, SavedModel and TFLite "
                            "exports cannot take it (export --format onnx can)")
    if weights.path is None and weights.spec != "none":  # known by sha256 only (a run whose base was converted)
        raise PipelineError(f"the {weights.spec} weights of {backbone.name} (sha256 {weights.sha256[:12]}...) are not "
                            "on this machine; pass --weights-dir with the file, or set TRANSFER_WEIGHTS_DIR")
    import keras

    from . import hub

    state = random.getstate()
    random.seed(0)  # Keras draws initializer seeds from `random`: weights 'none' are the same in every run
    try:
        if backbone.library == HUB:
            model = hub.features_model(backbone, hub.encoder(backbone, size, weights.path), size, pooling)
        else:
            ctor = getattr(keras.applications, backbone.constructor)
            model = ctor(include_top=False, weights=None, input_shape=(size, size, 3),
                         pooling=None if pooling == "none" else pooling, **backbone.kwargs)
    finally:
        random.setstate(state)
    if precision == "bfloat16":
        _convolutions_in_bfloat16(model)
    if weights.path and backbone.library != HUB:  # a preset was loaded with its encoder
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

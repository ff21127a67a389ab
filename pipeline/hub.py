"""KerasHub image encoders (DINOv2, SigLIP 2, CLIP) as frozen bases: built from the sizes the registry records
(``--weights none``, no download) or from a KerasHub preset (``imagenet``/``pretrained``: downloaded from Kaggle
as KerasHub does, or a local preset folder passed as ``--weights DIR``).

Pooled features are what each model's authors probe linearly:

- ``cls+mean`` (DINOv2): the class token and the mean of the patch tokens, concatenated (``2 * D``), after the
  final layer norm, as DINOv2's linear evaluation does;
- ``cls`` (CLIP): the class token after the final layer norm (CLIP's pooled output, before the projection);
- ``map`` (SigLIP 2): the output of the attention-pooling head.

``--pooling avg`` gives that vector; ``none`` keeps the patch tokens as ``(N, S/p, S/p, D)`` maps; ``max`` is
refused. The base is one functional model whose layers are the encoder's own (embedding, blocks, norms), so
``finetune --unfreeze N`` opens the last blocks. Needs ``pip install 'transfer-pipeline[hub]'``.
"""

from __future__ import annotations

from pathlib import Path

from .backbones import Backbone
from .errors import PipelineError

WEIGHTS_FILE = "model.weights.h5"  # of a KerasHub preset folder: its sha256 keys the features


def keras_hub_module():
    try:
        import keras_hub
    except ImportError:
        raise PipelineError("KerasHub encoders need keras-hub: pip install 'transfer-pipeline[hub]'") from None
    return keras_hub


def download_preset(preset: str) -> Path:
    """The folder of KerasHub's preset ``preset``, downloaded (from Kaggle) as KerasHub does when not cached."""
    keras_hub_module()
    from keras_hub.src.utils.preset_utils import get_file  # what Backbone.from_preset downloads with

    try:
        return Path(get_file(preset, WEIGHTS_FILE)).parent
    except Exception as exc:  # kagglehub raises many types
        raise PipelineError(f"could not download the KerasHub preset {preset} ({str(exc)[:200]}); on an offline "
                            f"machine put the preset folder in --weights-dir (named {preset}) or pass --weights DIR"
                            ) from None


def check_pooling(backbone: Backbone, pooling: str) -> None:
    if pooling == "max":
        raise PipelineError(f"{backbone.name} pools as its authors do ({backbone.token_pooling}) with --pooling avg; "
                            "--pooling none keeps the patch grid; there is no max pooling")


def encoder(backbone: Backbone, size: int, preset: str | None):
    """The KerasHub encoder: from ``preset`` (a folder or a KerasHub preset name) or from the recorded sizes."""
    models = keras_hub_module().models
    cls = getattr(models, backbone.constructor)
    if preset is None:
        return cls(**backbone.kwargs, image_shape=(size, size, 3))
    try:  # the preset's config.json names its class: an encoder, or an image-text model holding one
        extra = {"image_shape": (size, size, 3)} if backbone.constructor == "DINOV2Backbone" else {}
        loaded = models.Backbone.from_preset(preset, **extra)
    except Exception as exc:  # kagglehub and keras_hub raise many types
        raise PipelineError(f"could not load the KerasHub preset {preset} ({str(exc).strip()[:200]}); on an offline "
                            "machine download the preset folder elsewhere and pass --weights DIR") from None
    loaded = getattr(loaded, "vision_encoder", loaded)
    if not isinstance(loaded, cls):
        raise PipelineError(f"the preset {preset} holds a {type(loaded).__name__}, not {backbone.name}'s "
                            f"{backbone.constructor}")
    taken = tuple(loaded.inputs[0].shape[1:3])
    if taken != (size, size):  # DINOv2 interpolates its position embeddings; SigLIP and CLIP learned them at one size
        raise PipelineError(f"the preset {preset} of {backbone.name} takes {taken[0]} px images; pass --image-size "
                            f"{taken[0]}")
    return loaded


def features_model(backbone: Backbone, model, size: int, pooling: str):
    """``model`` (a KerasHub encoder) as one functional model from images to the stored features."""
    import keras

    check_pooling(backbone, pooling)
    image = model.inputs[0]
    grid = size // backbone.kwargs["patch_size"]
    if backbone.token_pooling == "map":  # SigLIP: no class token; pooled by its attention head
        tokens = model.post_layer_norm.output
        pooled = model.output
    else:
        tokens, registers = model.output, backbone.kwargs.get("num_register_tokens", 0)
        cls_token = keras.layers.Flatten(name="class_token")(
            keras.layers.Cropping1D((0, registers + grid * grid), name="crop_class")(tokens))
        tokens = keras.layers.Cropping1D((1 + registers, 0), name="crop_patches")(tokens)
        pooled = cls_token
        if backbone.token_pooling == "cls+mean":
            mean = keras.layers.GlobalAveragePooling1D(name="patch_mean")(tokens)
            pooled = keras.layers.Concatenate(name="class_and_patch_mean")([cls_token, mean])
    if pooling == "none":
        # KerasHub 0.32's SigLIP embedding declares one token more than it gives (a class token it does not have):
        # its depth is left for the graph to work out, which the declared length would get wrong
        depth = -1 if backbone.token_pooling == "map" else backbone.kwargs["hidden_dim"]
        out = keras.layers.Reshape((grid, grid, depth), name="patch_grid")(tokens)
    else:
        out = pooled
    return keras.Model(image, out, name=f"{backbone.name}_base")

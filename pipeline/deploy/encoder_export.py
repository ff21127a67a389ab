"""Export of a run whose features came from an encoder brought as an ONNX file: its composed encoder (from the
model cache, see :mod:`pipeline.onnx_encoder`) and its head converted to ONNX, joined into one ONNX model.

Only ONNX can hold such a model; :func:`refuse_format` names the formats that cannot.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

from ..errors import PipelineError
from ..onnx_encoder import FEATURES, NAME
from ..runs import Run

FORMAT = "onnx"
MAX_HEAD_OPSET = 18  # the newest opset the head's converter (tf2onnx) writes


def is_encoder_run(run: Run) -> bool:
    return bool(NAME.match(str(run.features.get("backbone"))))


def refuse_format(run: Run, format: str) -> None:
    """A :class:`PipelineError` for every format but ONNX."""
    if format != FORMAT:
        raise PipelineError(f"--format {format} cannot hold {run.features['backbone']}, an encoder brought as an "
                            f"ONNX file ({run.features['weights']}); export this run with --format onnx")


def write_onnx(run: Run, path: Path, classes: Sequence[str], weights_dir: str | None = None) -> None:
    """Write pixels (float32 RGB 0..255) -> the encoder -> the run's head -> probabilities to ``path``."""
    import onnx
    from onnx import compose, version_converter

    encoder = onnx.load(_composed_encoder(run, weights_dir))
    opset = next(o.version for o in encoder.opset_import if o.domain in ("", "ai.onnx"))
    head = _head_onnx(run, min(opset, MAX_HEAD_OPSET))
    if _opset(head) != opset:
        head = version_converter.convert_version(head, opset)
    head.ir_version = encoder.ir_version = max(head.ir_version, encoder.ir_version)
    joined = compose.merge_models(encoder, head, io_map=[(FEATURES, head.graph.input[0].name)], prefix2="head_")
    joined.metadata_props.add(key="labels", value=json.dumps(list(classes)))
    onnx.checker.check_model(joined)
    path.write_bytes(joined.SerializeToString())


def _opset(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _composed_encoder(run: Run, weights_dir: str | None) -> Path:
    """The encoder with its preprocessing and pooling, from (or put into) the run's model cache."""
    from ..assemble import recorded_backbone
    from ..engines import FrozenBase
    from ..prediction import model_cache_of
    from ..runtimes.onnx_cache import ensure

    spec, weights = recorded_backbone(run.features, weights_dir)
    f = run.features
    job = FrozenBase(spec, int(f["input_size"]), f["pooling"], f["preprocess"], "float32", weights, runtime="onnx",
              model_cache=str(model_cache_of(run)))
    return ensure(job)[0]


def _head_onnx(run: Run, opset: int):
    """The run's head (its export layers) as an ONNX model from features to probabilities."""
    import keras
    import onnx
    import tensorflow as tf

    from .converting import to_onnx

    shape = tuple(run.config["feature_shape"])
    inputs = keras.Input(shape, dtype="float32", name="features")
    x = inputs
    for layer in run.head().export_layers(shape):
        x = layer(x)
    model = keras.Model(inputs, x, name="head")
    spec = tf.TensorSpec((None, *shape), tf.float32, name="features")
    forward = tf.function(lambda features: model(features, training=False)).get_concrete_function(spec)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "head.onnx"
        to_onnx(model, path, opset=opset, forward=forward)
        return onnx.load(os.fspath(path))

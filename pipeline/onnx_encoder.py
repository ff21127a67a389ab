"""An image encoder brought as an ONNX file (``--backbone PATH.onnx``), exported from any framework.

Beside ``model.onnx`` lies ``model.json``, saying how the encoder wants its pixels::

    {"input_size": 224,                 # square input, px (required)
     "layout": "NCHW",                  # of the input, and of 4-D outputs: NCHW or NHWC (default NHWC)
     "channels": "RGB",                 # RGB or BGR (default RGB)
     "scale": 255,                      # pixels 0..255 are divided by this first (default 1)
     "mean": [0.485, 0.456, 0.406],     # then (x - mean) / std per channel (defaults 0 and 1)
     "std": [0.229, 0.224, 0.225]}

The encoder's first output is its features: ``(N, D)`` vectors (taken as they are: ``--pooling avg``, the
default, and only that) or ``(N, C, h, w)`` / ``(N, h, w, C)`` maps (pooled with ``--pooling avg|max``, or kept
as ``(N, h, w, C)`` with ``none``).

The project composes preprocessing + the encoder + pooling into one ONNX model (:func:`compose`), kept in the
model cache like a converted Keras base and checked before use: shape, finite values, and parity with the
user's file run as it is. The registry name of such a backbone is ``onnx-<hash>`` (the file's sha256 and its
settings); the feature file records the ``.onnx`` path as its weights and the file's sha256, so a later
``predict`` finds the file again and refuses another one. TensorFlow never runs it: ``--runtime tensorflow``,
``finetune`` and exports other than ONNX refuse it by name.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from .backbones import Backbone
from .errors import PipelineError
from .hashing import file_sha256

CONSTRUCTOR = "onnx"  # Backbone.constructor of an encoder brought as an ONNX file
NAME = re.compile(r"^onnx-[0-9a-f]{8}$")
LAYOUTS, CHANNELS = ("NHWC", "NCHW"), ("RGB", "BGR")
DEFAULTS = {"layout": "NHWC", "channels": "RGB", "scale": 1.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
PIXELS, FEATURES = "transfer_pixels", "transfer_features"  # names of the composed model's input and output


def is_encoder(backbone: Backbone) -> bool:
    return backbone.constructor == CONSTRUCTOR


def settings_path(path: str | Path) -> Path:
    """The JSON beside an ``.onnx`` file: ``model.onnx`` -> ``model.json``."""
    return Path(path).with_suffix(".json")


def load(path: str | Path) -> Backbone:
    """The backbone of the ONNX encoder at ``path``, its JSON settings validated."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"ONNX encoder not found: {path}")
    settings = read_settings(settings_path(path))
    sha256 = file_sha256(path)
    digest = hashlib.sha256((sha256 + json.dumps(settings, sort_keys=True)).encode()).hexdigest()
    size = settings["input_size"]
    return Backbone(f"onnx-{digest[:8]}", CONSTRUCTOR, CONSTRUCTOR, size, "", min_size=size, max_size=size,
                    kwargs={"path": str(path.resolve()), "sha256": sha256, **settings})


def recorded(name: str) -> Backbone:
    """A stand-in for a recorded ``onnx-<hash>`` name: enough to find its converted model in the model cache;
    :func:`load` the recorded file for anything else."""
    return Backbone(name, CONSTRUCTOR, CONSTRUCTOR, 0, "")


def read_settings(path: Path) -> dict:
    """The validated settings in ``path``, defaults filled in; a :class:`PipelineError` says what is wrong."""
    try:
        given = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{path} not found: an ONNX encoder needs a JSON beside it with at least "
                            '{"input_size": N} (see docs/backbones.md)') from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PipelineError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(given, dict):
        raise PipelineError(f"{path} must hold one JSON object")
    unknown = set(given) - set(DEFAULTS) - {"input_size"}
    if unknown:
        raise PipelineError(f"{path}: unknown keys {sorted(unknown)}; known: input_size, {', '.join(DEFAULTS)}")
    settings = {**DEFAULTS, **given}
    size = settings.get("input_size")
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 1024:
        raise PipelineError(f"{path}: input_size must be a whole number of px from 8 to 1024, not {size!r}")
    if settings["layout"] not in LAYOUTS or settings["channels"] not in CHANNELS:
        raise PipelineError(f"{path}: layout must be one of {LAYOUTS} and channels one of {CHANNELS}")
    for key in ("mean", "std"):
        value = settings[key]
        if not (isinstance(value, list) and len(value) == 3 and all(_number(v) for v in value)):
            raise PipelineError(f"{path}: {key} must be a list of 3 numbers (one per channel), not {value!r}")
    if not _number(settings["scale"]) or settings["scale"] <= 0 or any(s <= 0 for s in settings["std"]):
        raise PipelineError(f"{path}: scale and every std must be positive numbers")
    return {k: (float(v) if k == "scale" else [float(x) for x in v] if k in ("mean", "std") else v)
            for k, v in settings.items()}


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def preprocess(spec: Backbone, pixels: np.ndarray) -> np.ndarray:
    """Pixels 0..255 ``(N, S, S, 3)`` RGB as the encoder takes them."""
    s = spec.kwargs
    x = (np.asarray(pixels, np.float32) / s["scale"] - np.float32(s["mean"])) / np.float32(s["std"])
    x = x[..., ::-1] if s["channels"] == "BGR" else x
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if s["layout"] == "NCHW" else x, np.float32)


def pool(spec: Backbone, pooling: str, output: np.ndarray) -> np.ndarray:
    """The features stage one stores, from the encoder's first output."""
    if output.ndim == 2:
        return output
    maps = output.transpose(0, 2, 3, 1) if spec.kwargs["layout"] == "NCHW" else output
    return {"avg": lambda m: m.mean(axis=(1, 2)), "max": lambda m: m.max(axis=(1, 2)),
            "none": lambda m: m}[pooling](maps)


def check_output(spec: Backbone, pooling: str, output: np.ndarray, n: int) -> None:
    """Refuse an output that is not ``n`` finite vectors or maps, or a pooling a pooled output cannot take."""
    name = spec.kwargs["path"]
    if output.ndim not in (2, 4) or output.shape[0] != n:
        raise PipelineError(f"ONNX encoder {name} gives {output.dtype} {output.shape} for {n} images; expected "
                            "(N, D) vectors or (N, C, h, w) / (N, h, w, C) maps")
    if output.ndim == 2 and pooling != "avg":
        raise PipelineError(f"ONNX encoder {name} gives pooled vectors {output.shape[1:]}; pass --pooling avg "
                            "(its own pooling) rather than --pooling " + pooling)
    if not np.isfinite(output).all():
        raise PipelineError(f"ONNX encoder {name} gives values that are not finite numbers")


def reference(spec: Backbone, pooling: str, pixels: np.ndarray) -> tuple[np.ndarray, int]:
    """Features of ``pixels`` from the user's file run as it is (preprocessing and pooling in numpy), checked;
    and the rank of the encoder's output."""
    from .deploy.converting import onnx_session

    session = onnx_session(spec.kwargs["path"])
    _check_input(spec, session.get_inputs()[0].shape)
    output = np.asarray(session.run(None, {session.get_inputs()[0].name: preprocess(spec, pixels)})[0])
    check_output(spec, pooling, output, len(pixels))
    return pool(spec, pooling, output).astype(np.float32), output.ndim


def _check_input(spec: Backbone, shape: list) -> None:
    s, size = spec.kwargs, spec.default_size
    expected = [3, size, size] if s["layout"] == "NCHW" else [size, size, 3]
    if any(isinstance(d, int) and d != e for d, e in zip(shape[1:], expected)):
        raise PipelineError(f"ONNX encoder {s['path']} takes {shape}; its JSON says {s['layout']} at {size} px "
                            f"(expected (N, {', '.join(map(str, expected))}))")


def compose(spec: Backbone, pooling: str, rank: int, path: Path) -> None:
    """Write to ``path`` one ONNX model: float32 RGB pixels 0..255 ``(N, S, S, 3)`` -> the stored features
    (``rank``: of the encoder's output, 2 or 4, as :func:`reference` found it)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(spec.kwargs["path"])
    graph, s = model.graph, spec.kwargs
    initialized = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialized]
    if len(inputs) != 1:
        raise PipelineError(f"ONNX encoder {s['path']} has {len(inputs)} inputs; an image encoder takes one")
    image, features = inputs[0].name, graph.output[0].name
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    std = np.float32(s["std"])
    constants = {"transfer_scale": 1 / (s["scale"] * std), "transfer_shift": -np.float32(s["mean"]) / std}
    constants |= {"transfer_bgr": np.array([2, 1, 0], np.int64)} if s["channels"] == "BGR" else {}
    constants |= {"transfer_hw": np.array([1, 2], np.int64)} if rank == 4 and pooling != "none" and opset >= 18 else {}
    graph.initializer.extend(numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items())
    pre = [helper.make_node("Mul", [PIXELS, "transfer_scale"], ["transfer_scaled"]),
           helper.make_node("Add", ["transfer_scaled", "transfer_shift"], ["transfer_normalized"])]
    last = "transfer_normalized"
    if s["channels"] == "BGR":
        pre.append(helper.make_node("Gather", [last, "transfer_bgr"], ["transfer_bgr_pixels"], axis=3))
        last = "transfer_bgr_pixels"
    if s["layout"] == "NCHW":
        pre.append(helper.make_node("Transpose", [last], ["transfer_nchw"], perm=[0, 3, 1, 2]))
        last = "transfer_nchw"
    pre.append(helper.make_node("Identity", [last], [image]))
    post = _pooling_nodes(features, rank, s["layout"], pooling, opset, helper)
    nodes = pre + list(graph.node) + post
    del graph.node[:]
    graph.node.extend(nodes)
    graph.input.remove(inputs[0])
    graph.input.insert(0, helper.make_tensor_value_info(PIXELS, TensorProto.FLOAT,
                                                        ["batch", spec.default_size, spec.default_size, 3]))
    del graph.output[:]
    dims = ["batch", "height", "width", "channels"] if rank == 4 and pooling == "none" else ["batch", "features"]
    graph.output.append(helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, dims))
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # the checker raises its own ValidationError and others
        raise PipelineError(f"ONNX encoder {s['path']} does not compose with preprocessing and pooling "
                            f"({str(exc).strip().splitlines()[0][:200]})") from None
    path.write_bytes(model.SerializeToString())


def _pooling_nodes(output: str, rank: int, layout: str, pooling: str, opset: int, helper) -> list:
    """Nodes from the encoder's output (of ``rank`` 2 or 4) to :data:`FEATURES`, as :func:`pool` computes."""
    if rank == 2:
        return [helper.make_node("Identity", [output], [FEATURES])]
    maps, nodes = output, []
    if layout == "NCHW":
        nodes.append(helper.make_node("Transpose", [output], ["transfer_nhwc"], perm=[0, 2, 3, 1]))
        maps = "transfer_nhwc"
    if pooling == "none":
        return nodes + [helper.make_node("Identity", [maps], [FEATURES])]
    reduce = {"avg": "ReduceMean", "max": "ReduceMax"}[pooling]
    if opset >= 18:  # axes became an input in opset 18
        return nodes + [helper.make_node(reduce, [maps, "transfer_hw"], [FEATURES], keepdims=0)]
    return nodes + [helper.make_node(reduce, [maps], [FEATURES], axes=[1, 2], keepdims=0)]

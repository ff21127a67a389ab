"""A Keras image model as an ONNX or TFLite file, the runners that read those files back, and the checks
that say whether a converted model still computes what Keras does.

The model takes one float32 input ``(None, H, W, 3)``: RGB pixels 0..255 when preprocessing is inside.
ONNX goes through ``tf2onnx`` from a traced ``tf.function`` (input ``image``, output ``output``, batch
open); TFLite through the same traced function, frozen, and ``tf.lite.TFLiteConverter``, built-in
ops only, so the file runs on a phone's plain LiteRT interpreter.

int8 files are fully integer inside, with a ``uint8`` input and a float32 output: feed camera pixels as
they are (``q = round(x / scale) + zero_point``; calibration on photos spanning 0..255 makes that scale 1
and the zero point 0) and read probabilities directly. :func:`tflite_runner` does the quantizing.

Examples
--------
>>> to_onnx(model, "model.onnx")                                    # doctest: +SKIP
>>> probs = run_onnx(onnx_session("model.onnx", input_shape=(224, 224, 3)), pixels)  # doctest: +SKIP
>>> to_tflite(model, "model.tflite", quantize="int8", calibration=[train_pixels[:200]])  # doctest: +SKIP
>>> probs = tflite_runner("model.tflite")(pixels)                   # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..atomic import write_bytes
from ..errors import PipelineError

ONNX_OPSET = 17  # runs on onnxruntime 1.14 (2023) and later
QUANTIZATIONS = ("none", "float16", "int8")
INPUT_NAME, OUTPUT_NAME = "image", "output"
TF2ONNX_OWN = ("Const", "Placeholder")  # node types tf2onnx turns into initializers and inputs when it writes


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _input_spec(model):
    """The ``tf.TensorSpec`` of an image model's one input, batch left open."""
    import tensorflow as tf

    if len(model.inputs) != 1:
        raise PipelineError(f"model {model.name} has {len(model.inputs)} inputs; conversion needs one image input")
    shape, dtype = tuple(model.inputs[0].shape), str(model.inputs[0].dtype)
    if len(shape) != 4 or None in shape[1:] or shape[-1] != 3 or dtype != "float32":
        raise PipelineError(f"model {model.name} takes {dtype} {shape}; conversion needs float32 (None, H, W, 3)")
    return tf.TensorSpec((None, *shape[1:]), tf.float32, name=INPUT_NAME)


def _write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` beside ``path`` and rename it into place: readers see the old file or the new one."""
    write_bytes(path, data)  # created with the umask's permissions, as any file the user writes
    return Path(path)


def trace(model):
    """An image model's forward pass traced once: a concrete function of float32 ``(None, H, W, 3)`` images
    (what :func:`to_onnx` converts; calling it gives the reference outputs of a parity check)."""
    import tensorflow as tf

    return tf.function(lambda image: model(image, training=False)).get_concrete_function(_input_spec(model))


def to_onnx(model, path: str | os.PathLike, opset: int = ONNX_OPSET, forward=None,
            metadata: dict[str, str] | None = None, optimize: bool = True) -> Path:
    """Convert a Keras model with float32 input ``(None, H, W, 3)`` to an ONNX file (batch dimension open).

    ``forward``: the model's :func:`trace`, when the caller has one already; ``metadata`` goes into the file's
    ``metadata_props`` (``session.get_modelmeta().custom_metadata_map``). ``optimize=False`` skips tf2onnx's
    graph optimizers (transposes pushed through, constants folded), for a file only ONNX Runtime will open: it
    optimizes a model as it loads it (MobileNetV2 then ran at the same CPU cost per image, EfficientNetB0 within
    2%), and they took 20% (MobileNetV2) to 45% (EfficientNetB0) of the conversion.
    """
    import tensorflow as tf

    forward = forward or trace(model)
    # Not tf2onnx.convert.from_function: it takes every captured tensor for a graph input, so the constant
    # mean and variance of a Normalization layer became two more inputs of the ONNX model.
    image, output = forward.inputs[0].name, forward.outputs[0].name
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")  # tf2onnx calls TF1 functions that log deprecation warnings
    try:
        proto = _onnx_proto(_frozen(forward, image, output), image, output, opset, optimize)
    finally:
        logger.setLevel(level)
    graph = proto.graph
    for value in (graph.input[0], graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    for key, value in (metadata or {}).items():
        proto.metadata_props.add(key=key, value=value)
    return _write_atomic(path, proto.SerializeToString())


def _frozen(forward, image: str, output: str):
    """The traced forward pass as a GraphDef with its variables folded into constants, optimized as tf2onnx
    optimizes it. tf2onnx's ``from_function`` freezes through ``convert_variables_to_constants_v2``, which also
    rebuilds a function from the GraphDef, unused here: 60% of freezing MobileNetV2. Where TensorFlow's
    converter underneath is missing or fails, tf2onnx's way."""
    import tensorflow as tf
    from tf2onnx import tf_loader

    try:
        from tensorflow.python.framework import convert_to_constants as constants

        data = constants._FunctionConverterDataInEager(func=forward, lower_control_flow=False, aggressive_inlining=True)
        graph_def, _ = constants._replace_variables_by_constants(converter_data=data)
    except Exception:  # private to TensorFlow: it may move or change
        return tf_loader.from_function(forward, [image], [output])
    graph_def = tf_loader.fix_freezing_errors_part2(graph_def)
    with tf.Graph().as_default() as graph, tf_loader.tf_session(graph=graph) as session:
        tf.import_graph_def(graph_def, name="")
        return tf_loader.tf_optimize(tf_loader.inputs_without_resource(session, [image]), [output], graph_def)


def _onnx_proto(frozen, image: str, output: str, opset: int, optimize: bool):
    """tf2onnx's conversion of a frozen graph, its ONNX optimizers (if ``optimize``) run in place:
    ``from_graph_def`` deep-copies the whole graph before each optimizer, to roll back one that fails (45% of
    MobileNetV2's conversion time). An op ONNX cannot express is refused by name; when an optimizer fails
    instead, the conversion starts again through ``from_graph_def``."""
    import logging

    import onnx
    import tensorflow as tf
    import tf2onnx
    from tf2onnx import optimizer, tfonnx

    names = dict(input_names=[image], output_names=[output], opset=opset,
                 tensors_to_rename={image: INPUT_NAME, output: OUTPUT_NAME},
                 custom_op_handlers={"Erfc": (_erfc, [])})
    logger, level = logging.getLogger("tf2onnx"), logging.getLogger("tf2onnx").level
    logger.setLevel(logging.CRITICAL)  # what fails is raised, in one line
    try:
        with tf.Graph().as_default() as graph:
            tf.import_graph_def(frozen, name="")
            onnx_graph = tfonnx.process_tf_graph(graph, **names)
            unmapped = sorted({n.type for n in onnx_graph.get_nodes()
                               if not n.domain and not onnx.defs.has(n.type) and n.type not in TF2ONNX_OWN})
            if unmapped:
                raise PipelineError(f"ONNX has no counterpart of TensorFlow's {', '.join(unmapped)}")
            try:
                optimizers = None if optimize else {}  # None: all of tf2onnx's
                return optimizer.optimize_graph(onnx_graph, catch_errors=False, optimizers=optimizers).make_model(
                    "converted from keras")
            except Exception:  # tf2onnx's optimizers raise whatever their graph rewrites raise
                return tf2onnx.convert.from_graph_def(frozen, **names)[0]
    finally:
        logger.setLevel(level)


def _erfc(ctx, node, name, args) -> None:
    """TensorFlow's ``Erfc`` (in its exact GELU: ConvNeXt, KerasHub's ViTs), which ONNX lacks, as ``1 - Erf``."""
    from tf2onnx import utils

    x = node.input[0]
    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(x))
    erf = ctx.make_node("Erf", [x], op_name_scope=node.name, name="erf")
    one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype))
    ctx.replace_inputs(node, [one.output[0], erf.output[0]])
    node.type = "Sub"


def onnx_session(path: str | os.PathLike, threads: int | None = None,
                 input_shape: tuple[int, int, int] | None = None):
    """An ONNX Runtime CPU session on ``path`` with every graph optimization and ``threads`` intra-op threads
    (default: the cores available). Refuses, with a :class:`PipelineError`, a file that is missing or not a
    valid model, or whose input is not float32 ``(batch, *input_shape)``."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"ONNX model not found: {path}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or cores()
    options.inter_op_num_threads = 1
    # Idle threads sleep instead of spinning: as fast on MobileNetV2 (2 cores) and 4 to 10% less CPU per
    # image, which the decoding threads beside it can use.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        reason = str(exc).strip().splitlines()[0][:300]
        raise PipelineError(f"{path} is not a usable ONNX model ({reason}); delete it and convert again") from None
    inputs = session.get_inputs()
    expected = "(batch, " + ", ".join(map(str, input_shape or ("H", "W", "C"))) + ")"
    if (len(inputs) != 1 or inputs[0].type != "tensor(float)" or len(inputs[0].shape) != 4
            or (input_shape is not None and tuple(inputs[0].shape[1:]) != tuple(input_shape))):
        found = ", ".join(f"{i.name}: {i.type} {i.shape}" for i in inputs)
        raise PipelineError(f"{path} takes {found}; expected one float32 input {expected}")
    return session


def run_onnx(session, x: np.ndarray) -> np.ndarray:
    """The session's (first) output for the batch ``x``."""
    feed = {session.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)}
    return session.run(None, feed)[0]


def to_tflite(model, path: str | os.PathLike, quantize: str = "none",
              calibration: Iterable[np.ndarray] | None = None) -> Path:
    """Convert a Keras model with float32 input ``(None, H, W, 3)`` to a TFLite file of built-in ops.

    ``quantize``: ``none`` (float32), ``float16`` (weights stored as float16, half the size), ``int8``
    (full-integer post-training quantization: uint8 input, float32 output; needs ``calibration``, an
    iterable of float32 batches ``(n, H, W, 3)`` of pixels 0..255, a few hundred typical images in all).
    Calibrate on a random sample of every class: values outside the calibrated ranges are clipped, and a
    sample of one class (the first photos of a sorted folder) made every photo of the other come out 50/50.
    """
    if quantize not in QUANTIZATIONS:
        raise PipelineError(f"quantize={quantize!r} is not one of: {', '.join(QUANTIZATIONS)}")
    if quantize == "int8" and calibration is None:
        raise PipelineError("int8 quantization needs calibration images (an iterable of float32 pixel batches)")
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    # The forward pass with its variables folded into constants (from the traced function alone the converter
    # kept Keras 3 variables as resources, and the file computed NaN), handed over with a bare module: the
    # converter saves that as a SavedModel of its own, so the file keeps its ``serving_default`` signature
    # (input ``image``). The same file as through ``model.export``'s SavedModel, in a fifth of the time:
    # MobileNet 0.25 at 128 px, 0.8 s of CPU against 4.5 to 5.6 s, for each quantization.
    frozen = convert_variables_to_constants_v2(trace(model))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen], tf.Module())
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = lambda: ([np.asarray(batch, np.float32)] for batch in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
    try:
        data = converter.convert()
    except Exception as exc:
        raise PipelineError(f"TFLite conversion of {model.name} failed: {str(exc).strip()[:500]}") from None
    return _write_atomic(path, data)


def _interpreter(path: Path, threads: int | None):
    """A LiteRT interpreter: the standalone ``ai_edge_litert`` one, or TensorFlow's where that is missing."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    if not path.is_file():
        raise PipelineError(f"TFLite model not found: {path}")
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=threads or cores())
        interpreter.allocate_tensors()
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:300]
        raise PipelineError(f"{path} is not a usable TFLite model ({reason}); delete it and convert again") from None
    return interpreter


def tflite_runner(path: str | os.PathLike, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function from a float32 batch ``(n, H, W, 3)`` to the model's float32 output, for any TFLite file of
    one image input: quantized input and output are converted with their scale and zero point, and the input
    tensor is resized to each batch size."""
    interpreter = _interpreter(Path(path), threads)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def run(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if tuple(interpreter.get_input_details()[0]["shape"]) != x.shape:
            interpreter.resize_tensor_input(inp["index"], x.shape)
            interpreter.allocate_tensors()
        if np.issubdtype(inp["dtype"], np.integer):
            scale, zero = inp["quantization"]
            limits = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale) + zero, limits.min, limits.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if np.issubdtype(out["dtype"], np.integer):
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y

    return run

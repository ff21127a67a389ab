"""Every export format in one table: its file suffix, how it is written, how its own runtime reads it back, and
how close it must stay to ``transfer predict``. A new format is one :data:`FORMATS` entry.

Writers take the end-to-end Keras model (float32 RGB 0..255 -> class probabilities). Loaders return a function
from a float32 pixel batch ``(n, H, W, 3)`` to probabilities that uses the format's runtime alone (Keras,
TensorFlow, ONNX Runtime, the LiteRT interpreter), feeding it as the Deploy snippets in docs/deploy.md do.

Examples
--------
>>> get("onnx").suffix, get("tflite-int8").input_dtype
('.onnx', 'uint8')
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ..atomic import folder_problem
from ..errors import PipelineError
from .tolerances import INT8_MIN_TOP1, TOLERANCES

if TYPE_CHECKING:
    import numpy as np

Runner = Callable[["np.ndarray"], "np.ndarray"]
Writer = Callable[[object, Path, Sequence[str], "list[np.ndarray] | None"], None]
LABELS = "labels.txt"
MARKER = ".transfer-export.json"  # in a folder export: every entry it wrote, so a later export may replace it


@dataclass(frozen=True)
class Format:
    """One way to write the end-to-end model: ``write(model, path, classes, calibration)`` and ``load(path)``.

    A float format is held to ``tolerance`` (largest probability difference from predict); a quantized one,
    whose ``tolerance`` is None, to ``min_top1`` (least top-1 agreement with predict).
    """

    name: str
    suffix: str  # of the file; "" for a folder
    runtime: str
    write: Writer
    load: Callable[[Path], Runner]
    tolerance: float | None
    min_top1: float = 0.0
    input_dtype: str = "float32"
    calibrated: bool = False  # write needs calibration batches of the run's train images
    bfloat16: bool = False  # the runtime computes a base whose convolutions run in bfloat16 (--precision bfloat16)

    def output_problem(self, output: Path) -> str:
        """Why ``output`` cannot take this format ('' when it can)."""
        if self.suffix and output.suffix != self.suffix:
            return f"--output {output} must end in {self.suffix} for --format {self.name}"
        if self.suffix and output.is_dir():
            return f"--output {output} is a folder; pass a file name ending in {self.suffix}"
        if not self.suffix and output.suffix in SUFFIXES:
            return f"--output {output} names a {output.suffix} file, but --format {self.name} writes a folder"
        if not self.suffix and (problem := folder_problem(output, MARKER)):  # only an earlier export, unchanged
            return f"--output {output} is not a SavedModel folder an earlier export wrote ({problem}); pass a new folder"
        return ""

    def labels_path(self, output: Path) -> Path:
        """``labels.txt`` inside a folder export, beside a file export."""
        return (output if not self.suffix else output.parent) / LABELS


def _write_keras(model, path: Path, classes: Sequence[str], calibration) -> None:
    model.save(path)


def _load_keras(path: Path) -> Runner:
    import keras
    import numpy as np

    model = keras.saving.load_model(path, safe_mode=True)
    return lambda x: np.asarray(model.predict_on_batch(np.asarray(x, np.float32)))


def _write_savedmodel(model, path: Path, classes: Sequence[str], calibration) -> None:
    model.export(str(path), format="tf_saved_model", verbose=False)


def _load_savedmodel(path: Path) -> Runner:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))  # kept: its variables die with it
    return lambda x: loaded.serve(tf.constant(x, tf.float32)).numpy()


def _write_onnx(model, path: Path, classes: Sequence[str], calibration) -> None:
    from . import converting

    converting.to_onnx(model, path, metadata={"labels": json.dumps(list(classes))})


def _load_onnx(path: Path) -> Runner:
    from . import converting

    session = converting.onnx_session(path)
    return lambda x: converting.run_onnx(session, x)


def _tflite_writer(quantize: str) -> Writer:
    def write(model, path: Path, classes: Sequence[str], calibration) -> None:
        from . import converting

        converting.to_tflite(model, path, quantize, calibration)

    return write


def _load_tflite(path: Path) -> Runner:
    from . import converting

    return converting.tflite_runner(path)


FORMATS: dict[str, Format] = {f.name: f for f in [
    Format("keras", ".keras", "keras", _write_keras, _load_keras, TOLERANCES["keras"], bfloat16=True),
    Format("savedmodel", "", "tensorflow", _write_savedmodel, _load_savedmodel, TOLERANCES["savedmodel"],
           bfloat16=True),
    Format("onnx", ".onnx", "onnxruntime", _write_onnx, _load_onnx, TOLERANCES["onnx"]),
    Format("tflite", ".tflite", "litert", _tflite_writer("none"), _load_tflite, TOLERANCES["tflite"]),
    Format("tflite-float16", ".tflite", "litert", _tflite_writer("float16"), _load_tflite,
           TOLERANCES["tflite-float16"]),
    Format("tflite-int8", ".tflite", "litert", _tflite_writer("int8"), _load_tflite, None,
           min_top1=INT8_MIN_TOP1, input_dtype="uint8", calibrated=True),
]}
SUFFIXES = {f.suffix for f in FORMATS.values() if f.suffix}


def get(name: str) -> Format:
    """The format called ``name``, or a :class:`PipelineError` listing them."""
    if name not in FORMATS:
        raise PipelineError(f"--format {name!r} is not one of: {', '.join(FORMATS)}")
    return FORMATS[name]

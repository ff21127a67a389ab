"""One Keras model from raw RGB pixels to class probabilities: preprocessing, frozen base, pooling, head.

Input: float32 RGB in 0..255 at the backbone's input size; the model is assembled by
:mod:`pipeline.assemble`, so the file loads with ``safe_mode=True`` and nothing of this package. Heads
inside: ``dense`` as trained, ``logreg`` and ``svm`` as ``Dense`` layers with the standardization folded
in; ``knn`` cannot be expressed as layers and is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import PipelineError
from .layers import fixed_dense
from .runs import Run, open_run

FORMATS = ("keras", "savedmodel")


def _softmax_dense(coef: np.ndarray, intercept: np.ndarray, name: str):
    """A linear model's probabilities as one softmax layer (binary: softmax over [0, z] = sigmoid)."""
    if coef.shape[0] == 1:
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    return fixed_dense(coef.T, intercept, name, activation="softmax")


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
        return flatten + [fixed_dense(coef.T, intercept, "svm_decision"),
                          _softmax_dense(head.calibrator_.coef_, head.calibrator_.intercept_, "probabilities")]
    raise PipelineError(f"a {name} head cannot be exported as Keras layers; train --head logreg, svm or dense "
                        "and export that run (or use `transfer predict` with this one)")


def build_model(run_dir: str | os.PathLike, weights_dir: str | None = None):
    """The end-to-end ``keras.Model``: float32 RGB 0..255 (size, size, 3) -> class probabilities."""
    from .assemble import assemble_recorded

    run = open_run(run_dir)
    head = head_layers(run)  # refuses knn before the base is built
    model, _ = assemble_recorded(run.features, weights_dir, head=head,
                                 name=f"{run.features['backbone']}_{run.config['head']}")
    return model


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

"""One Keras model from raw RGB pixels to class probabilities: preprocessing, frozen base, pooling, head.

Input: float32 RGB in 0..255 at the backbone's input size; the model is assembled by
:mod:`pipeline.assemble`, so the file loads with ``safe_mode=True`` and nothing of this package. Each head
gives its own layers (``Head.export_layers``); a head that has none (``knn``) is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

from .atomic import replacing
from .errors import PipelineError
from .runs import open_run

FORMATS = ("keras", "savedmodel")


def build_model(run_dir: str | os.PathLike, weights_dir: str | None = None):
    """The end-to-end ``keras.Model``: float32 RGB 0..255 (size, size, 3) -> class probabilities."""
    from .assemble import assemble_recorded

    run = open_run(run_dir)
    head = run.head().export_layers(run.config["feature_shape"])  # refuses knn before the base is built
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
        with replacing(output) as tmp:
            model.save(tmp)
    else:
        model.export(str(output), format="tf_saved_model", verbose=False)
    return {"output": str(output), "format": format, "input_shape": list(model.input_shape[1:]),
            "classes": open_run(run_dir).classes}

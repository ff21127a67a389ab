"""One model from raw RGB pixels to class probabilities (preprocessing, base, pooling, head), written in any
format of :mod:`pipeline.deploy.formats`; every export checks itself before it is published.

Input: RGB pixels 0..255 at the backbone's input size (float32; uint8 for ``tflite-int8``). The model is
assembled by :mod:`pipeline.assemble`; each head gives its own layers (``Head.export_layers``), and a head that
has none (``knn``) is refused. After writing, the file is loaded back in its own runtime and run on the run's
val images (train without val; at most ``check_images``), which ``predict`` classifies too: a float format
further than its tolerance from predict's probabilities, or a quantized one under its least top-1 agreement, is
an error and the file is never published. ``labels.txt`` (one class per line, in output order) goes beside a
file and inside a SavedModel folder.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np

from .. import _tf_quiet
from . import check_photos, encoder_export, formats
from ..atomic import replacing, replacing_folder, write_text
from ..errors import PipelineError
from ..parity import max_abs_diff, top1_agreement
from .formats import Format, Runner
from ..runs import Run, open_run
from .tolerances import FLOAT16_FEATURES

BATCH = 32
TIMED_CALLS = 20


def build_model(run_dir: str | os.PathLike, weights_dir: str | None = None):
    """The end-to-end ``keras.Model``: float32 RGB 0..255 (size, size, 3) -> class probabilities."""
    from ..assemble import assemble_recorded

    run = open_run(run_dir)
    head = run.head().export_layers(run.config["feature_shape"])  # refuses knn before the base is built
    model, _ = assemble_recorded(run.features, weights_dir, head=head,
                                 name=f"{run.features['backbone']}_{run.config['head']}")
    return model


def export(run_dir: str | os.PathLike, output: str | os.PathLike, format: str = "keras",
           weights_dir: str | None = None, data_dir: str | os.PathLike | None = None, check_images: int = 200,
           calibration_images: int = 300) -> dict:
    """Write the end-to-end model as ``format``, check it against ``predict`` and publish it with ``labels.txt``.

    Returns ``output``, ``format``, ``runtime``, ``labels``, ``input_shape``, ``input_dtype``, ``classes``,
    ``bytes``, ``ms_per_image`` (batch 1, median of 20 calls) and ``check`` (``split``, ``images``, ``of``,
    ``top1_agreement``, ``max_prob_diff``, ``tolerance``, ``min_top1``). ``data_dir`` replaces the recorded
    dataset folder; ``calibration_images`` (a stratified sample of train) calibrates ``tflite-int8``.

    Examples
    --------
    >>> export("runs/urban_rural-mobilenet_v2-160-avg-logreg-20250101-120000", "model.onnx", "onnx")  # doctest: +SKIP
    """
    fmt, output = formats.get(format), Path(output)
    if fmt.output_problem(output):
        raise PipelineError(fmt.output_problem(output))
    if check_images < 1 or calibration_images < 1:
        raise PipelineError("--check-images and --calibration-images must be 1 or more")
    run = open_run(run_dir)
    if run.features.get("precision") == "bfloat16" and not fmt.bfloat16:
        # a float32 copy of the base moved probabilities by up to 0.04 and flipped 2% of hymenoptera val
        raise PipelineError(f"--format {fmt.name} cannot run this run's --precision bfloat16 base; export it as "
                            "keras or savedmodel, or extract with --precision float32 and train again")
    encoder = encoder_export.is_encoder_run(run)
    if encoder:
        encoder_export.refuse_format(run, fmt.name)
    labels = _labels(run.classes, fmt.labels_path(output) if fmt.suffix else None)  # a folder's go with it
    model = None if encoder else build_model(run_dir, weights_dir)
    size = int(run.features["input_size"])
    split, files, total = check_photos.check_files(run, check_images, data_dir)
    pixels, expected = _reference(run, files, weights_dir)
    calibration = check_photos.calibration(run, calibration_images, data_dir) if fmt.calibrated else None
    with (replacing_folder(output, formats.MARKER) if not fmt.suffix else replacing(output)) as tmp, _tf_quiet.filtered_stderr():
        if encoder:
            encoder_export.write_onnx(run, tmp, run.classes, weights_dir)
        else:
            fmt.write(model, tmp, run.classes, calibration)
        written = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file()) if tmp.is_dir() else tmp.stat().st_size
        runner = fmt.load(tmp)
        got = np.concatenate([runner(pixels[i:i + BATCH]) for i in range(0, len(pixels), BATCH)])
        check = {"split": split, "images": len(pixels), "of": total, **judge(fmt, expected, got, tolerance(fmt, run))}
        ms = _ms_per_image(runner, pixels[0])
        if not fmt.suffix:
            write_text(tmp / formats.LABELS, labels)
    if fmt.suffix:
        write_text(fmt.labels_path(output), labels)
    return {"output": str(output), "format": fmt.name, "runtime": fmt.runtime, "labels": str(fmt.labels_path(output)),
            "input_shape": [size, size, 3], "input_dtype": fmt.input_dtype, "classes": run.classes,
            "bytes": written, "ms_per_image": ms, "check": check}


def tolerance(fmt: Format, run: Run) -> float | None:
    """The format's tolerance, widened to float16's when predict rounds the run's features to float16 (the
    cache's ``--store-dtype float16``) and the exported model does not."""
    if fmt.tolerance is None or (run.features.get("store_dtype") or "float32") == "float32":
        return fmt.tolerance
    return max(fmt.tolerance, FLOAT16_FEATURES)


def judge(fmt: Format, expected: np.ndarray, got: np.ndarray, tolerance: float | None) -> dict:
    """``top1_agreement``, ``max_prob_diff``, ``tolerance``, ``min_top1`` of the file's probabilities against
    predict's, or a :class:`PipelineError` when they are not good enough."""
    agreement, diff = top1_agreement(expected, got), max_abs_diff(expected, got)
    n = len(expected)
    if tolerance is not None and not diff <= tolerance:  # NaN fails too
        raise PipelineError(f"the {fmt.name} file differs from predict by {diff:.2g} in probability on {n} images "
                            f"(tolerance {tolerance:g}); it was not written (rerun with --debug and report it)")
    if agreement < fmt.min_top1:
        raise PipelineError(f"the {fmt.name} file agrees with predict on {agreement:.1%} of {n} images, under the "
                            f"{fmt.min_top1:.0%} floor; it was not written (calibrate on more images with "
                            "--calibration-images, or export a float format)")
    return {"top1_agreement": agreement, "max_prob_diff": diff, "tolerance": tolerance, "min_top1": fmt.min_top1}


def _labels(classes: list[str], path: Path | None) -> str:
    """The text of ``labels.txt``; refused when ``path`` already lists other classes (another run's export
    beside it would lose its class names) or a class name holds a line break."""
    if any("\n" in c or "\r" in c for c in classes):
        raise PipelineError("a class name holds a line break, which labels.txt cannot hold; rename that folder")
    labels = "".join(f"{c}\n" for c in classes)
    if path is not None and path.is_file() and path.read_text(encoding="utf-8", errors="replace") != labels:
        raise PipelineError(f"{path} lists other classes (another run's export?); export into a folder of its own "
                            "or delete that file")
    return labels


def _reference(run: Run, files: list[str], weights_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """``(float32 pixels, predict's probabilities)`` of the readable ``files``, decoded as extract decodes."""
    from ..images import decode_all
    from ..prediction import predict

    pixels, kept, _ = decode_all(files, int(run.features["input_size"]))
    results = [r for r in predict(run.dir, files, weights_dir) if r["probabilities"] is not None]
    if not len(pixels) or len(results) != len(kept):
        raise PipelineError(f"none of the {len(files)} images to check the export on could be read")
    return pixels.astype(np.float32), np.array([[r["probabilities"][c] for c in run.classes] for r in results])


def _ms_per_image(runner: Runner, image: np.ndarray) -> float:
    """Milliseconds per call on one image (batch 1): the median of :data:`TIMED_CALLS` after two warm-ups."""
    x = image[None]
    times = []
    for i in range(TIMED_CALLS + 2):
        start = time.perf_counter()
        runner(x)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[2:])

"""Use a trained head on new photos: the recorded backbone with identical preprocessing, then the head.

The backbone, weights file (checked by sha256), input size, pooling, preprocessing, precision and stored
dtype all come from the run's record of its feature file, so new features match the cached ones. The base
runs where stage one would run it (``runtime``, see :mod:`pipeline.runtimes`); notes on that choice (a
conversion that fell back to TensorFlow) go to the ``pipeline`` logger as warnings.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from .atomic import writing
from .config import MAX_BATCH
from .datasets import is_image
from .errors import PipelineError
from .runs import Run, open_run

log = logging.getLogger(__name__)


def display_path(path: str) -> str:
    """``path`` as valid UTF-8: bytes of a non-UTF-8 file name are written as ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def image_files(paths) -> list[str]:
    """Files as given, and the pictures under folders (recursively, sorted): every file whose extension names
    an image format, also those the dataset scan does not read (TIFF, HEIC, ...), which then get a row saying
    whether they could be read, rather than being left out without a word."""
    files: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(str(f) for f in p.rglob("*") if f.is_file() and _picture(f.name))
        elif p.is_file():
            files.append(str(p))
        else:
            raise PipelineError(f"{p} not found: pass image files or folders of images")
    return files


OTHER_PICTURES = frozenset({".tif", ".tiff", ".jpe", ".jfif", ".heic", ".heif", ".avif", ".jp2", ".ico", ".ppm"})


def _picture(name: str) -> bool:
    return is_image(name) or (not name.startswith(".") and Path(name).suffix.lower() in OTHER_PICTURES)


class Extractor:
    """Stage one for a handful of images: uint8 RGB pixels -> features, as the cache stores them (the same
    runtimes and assembled feature model as ``extract``). The runtime is resolved on the first call, whose
    first images check a conversion to ONNX; :attr:`notes` says what that resolution noted. A base already
    converted in the model cache (keyed by the recorded weights' sha256) needs no weights file."""

    def __init__(self, features: dict, weights_dir: str | None = None, batch_size: int = 32,
                 runtime: str = "auto", model_cache: str | os.PathLike = "cache/models"):
        from . import backbones, runtimes
        from .assemble import recorded_backbone
        from .engines import FrozenBase

        precision = features.get("precision") or "float32"
        runtimes.check(runtime, precision)
        recorded = backbones.Weights(features["weights"], None, features["weights_sha256"])
        self.size = int(features["input_size"])
        self.store_dtype = features.get("store_dtype") or "float32"
        self.job = FrozenBase(backbones.get(features["backbone"]), self.size, features["pooling"], features["preprocess"],
                       precision, recorded, batch_size, runtime=runtime, model_cache=str(model_cache))
        if features["weights"] == "none" or not runtimes.runs_from_cache(self.job):  # a conversion needs the file
            spec, weights = recorded_backbone(features, weights_dir)
            self.job = replace(self.job, backbone=spec, weights=weights)
        self.runtime = None
        self.notes: list[str] = []

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        from . import runtimes

        if self.runtime is None:
            job, self.notes = runtimes.resolve(self.job, lambda n: pixels[:n])
            self.runtime = runtimes.create(job)
        step = self.job.batch_size
        feats = np.concatenate([self.runtime.features(pixels[i:i + step]) for i in range(0, len(pixels), step)])
        return feats.astype(self.store_dtype).astype(np.float32)  # the cache's rounding, if it stores float16


def model_cache_of(run: Run) -> Path:
    """The model cache beside the feature cache a run was trained from (``<cache_dir>/models``, where
    ``extract`` converted its base), or ``cache/models`` when that folder is not on this machine
    (``$TRANSFER_MODEL_CACHE`` instead, when set)."""
    from .runtimes import model_cache

    cache_dir = Path(run.config["cache"]).parent.parent
    return model_cache(cache_dir if cache_dir.is_dir() else "cache")


def predict(run_dir: str | os.PathLike, paths, weights_dir: str | None = None, batch_size: int = 32,
            runtime: str = "auto", cache_dir: str | os.PathLike | None = None) -> list[dict]:
    """``[{path, label, probabilities: {class: p}}]`` for images (files or folders); unreadable files come
    back with ``label`` None and an ``error`` reason instead of stopping the run.

    ``runtime`` as for :func:`pipeline.extract`; converted bases are cached in ``cache_dir/models`` (by default
    :func:`model_cache_of` the run).

    Examples
    --------
    >>> predict("runs/urban_rural-mobilenet_v2-160-avg-logreg-20250101-120000", ["new_photos/"])  # doctest: +SKIP
    [{'path': 'new_photos/a.jpg', 'label': 'urban', 'probabilities': {'rural': 0.03, 'urban': 0.97}}]
    """
    from .images import decode_all

    if not 1 <= batch_size <= MAX_BATCH:
        raise PipelineError(f"--batch-size must be between 1 and {MAX_BATCH}")
    run = open_run(run_dir)
    predict_proba = run.predict_proba()
    files = image_files(paths)
    models = Path(cache_dir) / "models" if cache_dir is not None else model_cache_of(run)
    extractor = Extractor(run.features, weights_dir, max(1, min(batch_size, len(files))), runtime, models)
    pixels, kept, reasons = decode_all(files, extractor.size)
    results = [{"path": display_path(path), "label": None, "probabilities": None,
                **({"error": reasons[i]} if i in reasons else {})} for i, path in enumerate(files)]
    if kept:
        proba = predict_proba(extractor(pixels))
        for note in extractor.notes:
            log.warning(note)
        if not np.isfinite(proba).all():
            raise PipelineError(f"the head of {run_dir} gives probabilities that are not numbers; train it again")
        for i, row in zip(kept, proba):
            results[i]["label"] = run.classes[int(np.argmax(row))]
            results[i]["probabilities"] = {c: float(p) for c, p in zip(run.classes, row)}
    return results


def write_csv(results: list[dict], run: Run | list[str], output: str | os.PathLike) -> Path:
    """``path,label,p_<class>...,error`` one row per input file."""
    classes = run.classes if isinstance(run, Run) else run
    output = Path(output)
    with writing(output, newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["path", "label", *(f"p_{c}" for c in classes), "error"])
        for r in results:
            probs = [f"{r['probabilities'][c]:.6f}" if r["probabilities"] else "" for c in classes]
            out.writerow([r["path"], r["label"] or "", *probs, r.get("error", "")])
    return output

"""Where a frozen base runs: each runtime turns uint8 RGB batches into features, as the cache stores them.

``tensorflow`` runs the assembled Keras model as one traced graph; ``onnx`` runs it converted once to ONNX
(:mod:`pipeline.runtimes.onnx_cache`) on ONNX Runtime, without importing TensorFlow once the model is cached.
``auto`` picks one per backbone and precision (:mod:`pipeline.runtimes.auto`). Features from either agree
within :data:`pipeline.runtimes.onnx_cache.TOLERANCE` of their scale.

Adding a runtime is one module here, ``pipeline/runtimes/<name>.py``, whose ``RUNTIME`` is its class, plus its
name in :data:`pipeline.config.RUNTIMES` (where the command line reads the choices without importing this).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..config import RUNTIME_CHOICES, RUNTIMES
from ..errors import PipelineError
from ..onnx_encoder import is_encoder


MODEL_CACHE_ENV = "TRANSFER_MODEL_CACHE"


def model_cache(cache_dir: str | os.PathLike) -> Path:
    """The folder of converted bases: ``$TRANSFER_MODEL_CACHE`` when set (one for every cache and run on the
    machine), else ``<cache_dir>/models``, beside the feature files."""
    return Path(os.environ.get(MODEL_CACHE_ENV) or Path(cache_dir) / "models")


class Runtime(Protocol):
    """A frozen base, built once: ``features`` of up to ``batch_size`` images at a time."""

    build_seconds: float

    def build(self) -> None: ...

    def features(self, pixels: np.ndarray) -> np.ndarray: ...


def check(runtime: str, precision: str = "float32") -> None:
    """Refuse an unknown runtime, or ``onnx`` for a precision only TensorFlow runs."""
    if runtime not in RUNTIME_CHOICES:
        raise PipelineError(f"--runtime {runtime!r} is not one of: {', '.join(RUNTIME_CHOICES)}")
    if runtime == "onnx" and precision != "float32":
        raise PipelineError(f"--runtime onnx runs float32 bases only; pass --runtime tensorflow (or auto) with "
                            f"--precision {precision}")


def resolve(job, sample: Callable[[int], np.ndarray] | None = None) -> tuple:
    """``(job, notes)``: the job with a concrete runtime. ``auto`` follows :func:`pipeline.runtimes.auto.choose`;
    ``onnx`` needs the converted model, found in ``job.model_cache`` or converted now and checked against
    TensorFlow on ``sample(n)`` (the job's first ``n`` images); a conversion that fails or disagrees, or a model
    cache that cannot be written, falls back to ``tensorflow`` with a note saying why."""
    name = concrete(job)
    if name != "onnx":
        return replace(job, runtime=name), []
    from .onnx_cache import ConversionRefused, ensure

    try:
        _, notes = ensure(job, sample)
    except ConversionRefused as exc:
        if is_encoder(job.backbone):  # TensorFlow cannot run it: nothing to fall back to
            raise
        return replace(job, runtime="tensorflow"), [f"{exc}: running on TensorFlow"]
    except OSError as exc:
        return replace(job, runtime="tensorflow"), [f"cannot use the model cache {job.model_cache} "
                                                     f"({exc.strerror or exc}): running on TensorFlow"]
    return replace(job, runtime="onnx"), notes


def concrete(job) -> str:
    """The runtime ``job.runtime`` names, ``auto`` decided (:func:`pipeline.runtimes.auto.choose`) before any
    conversion or fallback."""
    check(job.runtime, job.precision)
    if is_encoder(job.backbone):
        if job.runtime == "tensorflow" or job.precision != "float32":
            raise PipelineError(f"{job.backbone.name} is an encoder brought as an ONNX file: it runs on ONNX Runtime "
                                "in float32 only (--runtime auto or onnx, --precision float32)")
        return "onnx"
    if job.runtime != "auto":
        return job.runtime
    from .auto import choose

    return choose(job.backbone.name, job.precision)


def runs_from_cache(job) -> bool:
    """Whether the job's base will run on a converted model already in the model cache: then it needs no
    weights file, and ``job.weights`` need only carry the recorded sha256."""
    if concrete(job) != "onnx":
        return False
    from .onnx_cache import ready

    return ready(job)


def create(job) -> Runtime:
    """The runtime ``job.runtime`` (a concrete one: see :func:`resolve`) for a :class:`pipeline.engines.FrozenBase`."""
    if job.runtime not in RUNTIMES:
        raise PipelineError(f"unknown runtime {job.runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    return importlib.import_module(f"{__name__}.{job.runtime}").RUNTIME(job)

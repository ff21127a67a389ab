"""Where a frozen base runs: each runtime turns uint8 RGB batches into features, as the cache stores them.

Adding a runtime is one module here plus one line in :data:`RUNTIMES`.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np

from ..errors import PipelineError

RUNTIMES = {"tensorflow": "TensorFlowRuntime"}  # name -> class in pipeline.runtimes.<name>


class Runtime(Protocol):
    """A frozen base, built once: ``features`` of up to ``batch_size`` images at a time."""

    build_seconds: float

    def build(self) -> None: ...

    def features(self, pixels: np.ndarray) -> np.ndarray: ...


def create(job) -> Runtime:
    """The runtime ``job.runtime`` for a :class:`pipeline.engines.Job`."""
    if job.runtime not in RUNTIMES:
        raise PipelineError(f"unknown runtime {job.runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    module = importlib.import_module(f"{__name__}.{job.runtime}")
    return getattr(module, RUNTIMES[job.runtime])(job)

"""The frozen base on ONNX Runtime (CPU): the job's converted model from the model cache, no TensorFlow."""

from __future__ import annotations

import time

import numpy as np


class OnnxRuntime:
    """Runs a :class:`pipeline.engines.Job`'s converted base; the batch dimension is open, so nothing is padded."""

    def __init__(self, job):
        self.job = job
        self._session = None
        self.build_seconds = 0.0

    def build(self) -> None:
        """Open the cached model (converting it first, checked on pseudo-random pixels, when there is none)."""
        if self._session is not None:
            return
        start = time.perf_counter()
        from ..converting import onnx_session
        from .modelcache import ensure

        path, _ = ensure(self.job)
        self._session = onnx_session(path, input_shape=(self.job.size, self.job.size, 3))
        self.build_seconds = time.perf_counter() - start

    def features(self, pixels: np.ndarray) -> np.ndarray:
        """Features (float32) of ``(n, size, size, 3)`` uint8 RGB images."""
        from ..converting import run_onnx

        self.build()
        return run_onnx(self._session, pixels)

"""The frozen base on ONNX Runtime (CPU): the job's converted model from the model cache, no TensorFlow.

Each batch is split across the cores, one single-threaded run per part, rather than each operator split across
threads: beside the decoding threads, that took 10 to 12% less CPU per image and ran as fast or faster
(MobileNetV2 at 160 px, hymenoptera, 2 cores; ``converting.onnx_session`` threads measured in the engine loop).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class OnnxRuntime:
    """Runs a :class:`pipeline.engines.Job`'s converted base; the batch dimension is open, so nothing is padded."""

    def __init__(self, job):
        self.job = job
        self._session = None
        self._pool: ThreadPoolExecutor | None = None
        self._parts = 1  # a batch is split into this many runs, one per core
        self.build_seconds = 0.0

    def build(self) -> None:
        """Open the cached model (converting it first, checked on pseudo-random pixels, when there is none)."""
        if self._session is not None:
            return
        start = time.perf_counter()
        from ..converting import cores, onnx_session
        from .modelcache import ensure

        path, _ = ensure(self.job)
        self._session = onnx_session(path, threads=1, input_shape=(self.job.size, self.job.size, 3))
        self._parts = cores()
        self._pool = ThreadPoolExecutor(self._parts, thread_name_prefix="onnx")
        # the first run plans ONNX Runtime's memory for the batch shape: part of the set-up, as in TensorFlow's runtime
        self.features(np.zeros((self.job.batch_size, self.job.size, self.job.size, 3), np.uint8))
        self.build_seconds = time.perf_counter() - start

    def features(self, pixels: np.ndarray) -> np.ndarray:
        """Features (float32) of ``(n, size, size, 3)`` uint8 RGB images."""
        from ..converting import run_onnx

        self.build()
        parts = np.array_split(pixels, max(1, min(self._parts, len(pixels))))
        return np.concatenate(list(self._pool.map(lambda part: run_onnx(self._session, part), parts)))

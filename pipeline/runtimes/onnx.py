"""The frozen base on ONNX Runtime (CPU): the job's converted model from the model cache, no TensorFlow.

Each batch is split into runs of at most :data:`RUN_IMAGES` images, spread over the cores, each run single-threaded,
rather than each operator split across threads: beside the decoding threads, that took 10 to 12% less CPU per
image and ran as fast or faster; and small runs stay in cache: single-threaded, 3.7 CPU-ms per image in runs of 4
against 4.2 in runs of 32, and in the engine runs of 4 took 5 to 10% less CPU than runs of 16 (one per core).
Measured with MobileNetV2 at 160 px on hymenoptera and hotdog_nothotdog, 2 cores.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

RUN_IMAGES = 4


class OnnxRuntime:
    """Runs a :class:`pipeline.engines.FrozenBase`'s converted base; the batch dimension is open, so nothing is padded."""

    def __init__(self, job):
        self.job = job
        self._session = None
        self._path = None
        self._shape: tuple[int, ...] = ()
        self._pool: ThreadPoolExecutor | None = None
        self._cores = 1
        self.build_seconds = 0.0

    def build(self) -> None:
        """Open the cached model (converting it first, checked on pseudo-random pixels, when there is none); its
        features are checked on every batch (:func:`pipeline.runtimes.onnx_cache.check_features`)."""
        if self._session is not None:
            return
        start = time.perf_counter()
        from ..deploy.converting import cores, onnx_session
        from .onnx_cache import ensure, output_shape

        path, _ = ensure(self.job)
        self._path, self._shape = path, output_shape(self.job)
        self._session = onnx_session(path, threads=1, input_shape=(self.job.size, self.job.size, 3))
        self._cores = cores()
        self._pool = ThreadPoolExecutor(self._cores, thread_name_prefix="onnx")
        # the first run plans ONNX Runtime's memory for the batch shape: part of the set-up, as in TensorFlow's runtime
        self.features(np.zeros((self.job.batch_size, self.job.size, self.job.size, 3), np.uint8))
        self.build_seconds = time.perf_counter() - start

    def features(self, pixels: np.ndarray) -> np.ndarray:
        """Features (float32) of ``(n, size, size, 3)`` uint8 RGB images."""
        from ..deploy.converting import run_onnx
        from .onnx_cache import check_features

        self.build()
        runs = self._cores * math.ceil(len(pixels) / (RUN_IMAGES * self._cores))  # as many runs for every core
        parts = np.array_split(pixels, max(1, min(runs, len(pixels))))
        features = np.concatenate(list(self._pool.map(lambda part: run_onnx(self._session, part), parts)))
        check_features(self._path, features, self._shape)
        return features


RUNTIME = OnnxRuntime

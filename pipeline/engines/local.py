"""The local engine: a thread pool decoding batches ahead (overlapped with inference) feeding a compiled
forward pass; every finished batch is written as a part file.

Decoding runs on plain threads rather than a tf.data ``numpy_function`` map: on two cores the tf.data
pipeline fed the same forward pass 3 to 15% slower, with passes stalling at one fixed rate
(``scripts/bench_levers.py``)."""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np

from ..augment import augment_view
from ..images import load_image
from ..store import Key, Parts
from .base import Job, Outcome

AHEAD = 2  # batches decoded ahead of the forward pass: enough to hide decode, memory bounded in N


class LocalEngine:
    """Runs a :class:`Job` in this process. Build once, ``run`` as many file lists as needed."""

    def __init__(self, job: Job):
        self.job = job
        self._infer = None
        self.build_seconds = 0.0

    def build(self) -> None:
        """Build the model and trace the forward pass (once; ``run`` and ``features`` call it)."""
        if self._infer is not None:
            return
        start = time.perf_counter()  # importing TensorFlow is part of the set-up cost
        import tensorflow as tf

        from .. import backbones

        job = self.job
        model = backbones.build(job.backbone, job.size, job.pooling, job.weights, job.precision)
        preprocess = backbones.preprocess_fn(job.backbone, job.preprocess)
        spec = tf.TensorSpec((job.batch_size, job.size, job.size, 3), tf.uint8)

        @tf.function(input_signature=[spec])
        def infer(images):
            return tf.cast(model(preprocess(tf.cast(images, tf.float32)), training=False), tf.float32)

        infer(tf.zeros(spec.shape, tf.uint8))  # the first call sets up oneDNN kernels (0.3 s for MobileNetV2)
        self._infer = infer
        self.build_seconds = time.perf_counter() - start

    def features(self, pixels) -> np.ndarray:
        """Features (float32) of up to ``batch_size`` images, ``(n, size, size, 3)`` uint8 RGB."""
        self.build()
        n, batch = len(pixels), self.job.batch_size
        if n < batch:  # one compiled shape: pad the last batch rather than trace a second graph
            pixels = np.pad(np.asarray(pixels), [(0, batch - n), (0, 0), (0, 0), (0, 0)])
        return self._infer(pixels).numpy()[:n]

    def run(self, files: list[str], keys: list[Key], parts: Parts,
            on_batch: Callable[[int], None] = lambda n: None) -> Outcome:
        """Compute features for ``files`` (absolute paths) and write them, keyed by ``keys``, to ``parts``."""
        self.build()
        reasons: dict[int, str] = {}
        computed, start = 0, time.perf_counter()
        for pixels, idx in self._decoded_batches(files, keys, reasons):
            feats = self.features(pixels)
            good = [j for j, i in enumerate(idx) if i not in reasons]
            if good:
                parts.write([keys[idx[j]] for j in good], feats[good])
            computed += len(good)
            on_batch(len(idx))
        return Outcome(computed=computed, failed=reasons, seconds=time.perf_counter() - start)

    def _decoded_batches(self, files: list[str], keys: list[Key],
                         reasons: dict[int, str]) -> Iterator[tuple[np.ndarray, list[int]]]:
        """Batches of pixels in file order, decoded on one thread per core up to ``AHEAD`` batches ahead of
        the forward pass (Pillow releases the GIL); a file that cannot be used becomes a black image and a
        reason in ``reasons``."""
        size, batch, job = self.job.size, self.job.batch_size, self.job

        def load(i: int) -> np.ndarray:
            pixels, reason = load_image(files[i], size)
            if pixels is None:
                reasons[i] = reason
                return np.zeros((size, size, 3), np.uint8)
            if keys[i][1] > 0:  # an augmented view; view 0 is the image as decoded
                pixels = augment_view(pixels, job.augment, keys[i][0], keys[i][1], job.seed)
            return pixels

        with ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="decode") as pool:
            pending: deque = deque()
            for first in range(0, len(files), batch):
                idx = list(range(first, min(first + batch, len(files))))
                pending.append((idx, pool.map(load, idx)))
                if len(pending) > AHEAD:
                    idx, images = pending.popleft()
                    yield np.stack(list(images)), idx
            for idx, images in pending:
                yield np.stack(list(images)), idx

"""The local engine: a tf.data pipeline (parallel decode overlapped with inference) feeding a
compiled forward pass; every finished batch is written as a part file."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..augment import augment_view
from ..images import load_image
from ..store import Key, Parts
from .base import Job, Outcome


class LocalEngine:
    """Runs a :class:`Job` in this process. Build once, ``run`` as many file lists as needed."""

    def __init__(self, job: Job):
        self.job = job
        self._infer = None
        self.build_seconds = 0.0

    def _build(self) -> None:
        import tensorflow as tf

        from .. import backbones

        start = time.perf_counter()
        job = self.job
        model = backbones.build(job.backbone, job.size, job.pooling, job.weights, job.precision)
        preprocess = backbones.preprocess_fn(job.backbone, job.preprocess)
        spec = tf.TensorSpec((job.batch_size, job.size, job.size, 3), tf.uint8)

        @tf.function(input_signature=[spec])
        def infer(images):
            return tf.cast(model(preprocess(tf.cast(images, tf.float32)), training=False), tf.float32)

        infer.get_concrete_function()
        self._infer = infer
        self.build_seconds = time.perf_counter() - start

    def run(self, files: list[str], keys: list[Key], parts: Parts,
            on_batch: Callable[[int], None] = lambda n: None) -> Outcome:
        """Compute features for ``files`` (absolute paths) and write them, keyed by ``keys``, to ``parts``."""
        import tensorflow as tf

        if self._infer is None:
            self._build()
        size, batch = self.job.size, self.job.batch_size
        reasons: dict[int, str] = {}

        def load(i):
            i = int(i)
            pixels, reason = load_image(files[i], size)
            if pixels is None:
                reasons[i] = reason
                return np.zeros((size, size, 3), np.uint8), np.int64(i)
            if keys[i][1] > 0:  # an augmented view; view 0 is the image as decoded
                pixels = augment_view(pixels, self.job.augment, keys[i][0], keys[i][1], self.job.seed)
            return pixels, np.int64(i)

        def load_op(i):
            pixels, idx = tf.numpy_function(load, [i], [tf.uint8, tf.int64], stateful=False)
            pixels.set_shape((size, size, 3))
            return pixels, idx

        ds = (tf.data.Dataset.range(len(files))
              .map(load_op, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
              .batch(batch)
              .prefetch(2))
        computed, start = 0, time.perf_counter()
        for pixels, idx in ds:
            n = int(idx.shape[0])
            if n < batch:
                pixels = tf.pad(pixels, [[0, batch - n], [0, 0], [0, 0], [0, 0]])
            feats = self._infer(pixels).numpy()[:n]
            good = [j for j, i in enumerate(idx.numpy()) if int(i) not in reasons]
            if good:
                parts.write([keys[int(idx[j])] for j in good], feats[good])
            computed += len(good)
            on_batch(n)
        return Outcome(computed=computed, failed=reasons, seconds=time.perf_counter() - start)

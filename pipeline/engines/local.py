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
        self.build()  # before importing TensorFlow here, so that the import counts as set-up, not compute
        import tensorflow as tf

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
            feats, idx = self.features(pixels), idx.numpy()
            good = [j for j, i in enumerate(idx) if i not in reasons]
            if good:
                parts.write([keys[idx[j]] for j in good], feats[good])
            computed += len(good)
            on_batch(len(idx))
        return Outcome(computed=computed, failed=reasons, seconds=time.perf_counter() - start)

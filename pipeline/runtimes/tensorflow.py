"""The frozen base on TensorFlow: the assembled feature model traced once as a compiled forward pass."""

from __future__ import annotations

import time

import numpy as np

from .._kept import Kept
from ..backbones import KEPT_BASES, kept_key

_kept = Kept(KEPT_BASES)


class TensorFlowRuntime:
    """Runs a :class:`pipeline.engines.FrozenBase`'s feature model; every batch is padded to one compiled shape."""

    def __init__(self, job):
        self.job = job
        self._infer = None
        self.build_seconds = 0.0

    def build(self) -> None:
        """Build the model and trace the forward pass (once; ``features`` calls it). The process keeps the last
        few traced passes, as it keeps their bases (:func:`pipeline.backbones.build`)."""
        if self._infer is not None:
            return
        start = time.perf_counter()  # importing TensorFlow is part of the set-up cost
        job = self.job
        base = kept_key(job.backbone, job.size, job.pooling, job.weights, job.precision)
        self._infer = _kept.get(base and (*base, job.preprocess, job.batch_size), lambda: _traced(job))
        self.build_seconds = time.perf_counter() - start

    def features(self, pixels: np.ndarray) -> np.ndarray:
        """Features (float32) of up to ``batch_size`` images, ``(n, size, size, 3)`` uint8 RGB."""
        self.build()
        n, batch = len(pixels), self.job.batch_size
        if n < batch:  # one compiled shape: pad the last batch rather than trace a second graph
            pixels = np.pad(np.asarray(pixels), [(0, batch - n), (0, 0), (0, 0), (0, 0)])
        return self._infer(pixels).numpy()[:n]


def _traced(job):
    """The job's feature model as a traced forward pass over uint8 batches of ``job.batch_size``, called once."""
    import tensorflow as tf

    from ..assemble import assemble

    model, _ = assemble(job.backbone, job.size, job.pooling, job.weights, job.preprocess, job.precision)
    spec = tf.TensorSpec((job.batch_size, job.size, job.size, 3), tf.uint8)

    @tf.function(input_signature=[spec])
    def infer(images):
        return tf.cast(model(tf.cast(images, tf.float32), training=False), tf.float32)

    infer(tf.zeros(spec.shape, tf.uint8))  # the first call sets up oneDNN kernels (0.3 s for MobileNetV2)
    return infer


RUNTIME = TensorFlowRuntime

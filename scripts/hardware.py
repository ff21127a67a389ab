"""How far a stage-one speed is from this CPU's limit: the forward pass's FLOPs per image, counted from the
model's layers, against the float32 matrix-multiply rate numpy's BLAS reaches on every core."""

from __future__ import annotations

import math
import time

import numpy as np


def _layers(model):
    """Every layer of ``model``, nested models (the base inside the assembled model) opened."""
    for layer in model.layers:
        yield from _layers(layer) if hasattr(layer, "layers") else [layer]


def forward_flops(model) -> int:
    """Floating-point operations of one image through ``model``: 2 x the multiply-adds of its convolutions
    (grouped and depthwise included) and dense layers. Normalization, activations, pooling and sums, a few
    percent of the total, are left out, so the limit derived from it is a little optimistic."""
    import keras

    total = 0
    for layer in _layers(model):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            out = layer.output.shape[1:]  # (H, W, C) or (..., units)
            positions = math.prod(out[:-1])
            if isinstance(layer, keras.layers.Dense):
                per_output = layer.input.shape[-1]
            elif isinstance(layer, keras.layers.DepthwiseConv2D):
                per_output = math.prod(layer.kernel_size)
            else:
                per_output = math.prod(layer.kernel_size) * layer.input.shape[-1] // layer.groups
            total += 2 * positions * out[-1] * per_output
    return total


def matmul_peak(n: int = 2048, repeat: int = 7) -> float:
    """GFLOP/s of a float32 ``n x n`` matrix product (numpy's BLAS, all cores), the fastest of ``repeat``:
    on a busy machine the fastest pass is the closest to what the cores can do."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
    a @ b  # warm-up: threads started, pages touched
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9

"""Keras layers with fixed weights, built from arrays (export preprocessing and linear heads)."""

from __future__ import annotations

import numpy as np


def fixed_dense(kernel: np.ndarray, bias: np.ndarray, name: str, activation: str | None = None):
    """A frozen ``Dense`` layer computing ``x @ kernel + bias``."""
    import keras

    layer = keras.layers.Dense(kernel.shape[1], activation=activation, name=name, trainable=False)
    layer.build((None, kernel.shape[0]))
    layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return layer

"""Keras layers with fixed weights built from arrays (export preprocessing and exported linear heads)."""

from __future__ import annotations

import numpy as np


def fixed_dense(kernel: np.ndarray, bias: np.ndarray, name: str, activation: str | None = None):
    """A frozen ``Dense`` computing ``activation(x @ kernel + bias)``."""
    import keras

    layer = keras.layers.Dense(kernel.shape[1], activation=activation, name=name, trainable=False)
    layer.build((None, kernel.shape[0]))
    layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return layer


def softmax_dense(coef: np.ndarray, intercept: np.ndarray, name: str):
    """A linear model's probabilities as one softmax layer (binary: softmax over [0, z] = sigmoid)."""
    if coef.shape[0] == 1:
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    return fixed_dense(coef.T, intercept, name, activation="softmax")

"""Probabilities of saved heads (``logreg``, ``svm``, ``dense``) from their ``head.npz`` arrays, with numpy alone.

Importing scikit-learn (and the SciPy and pandas it imports), or Keras and TensorFlow, is most of a fresh
``transfer predict``'s start-up, while these heads' probabilities are a few products. The linear ones are
scikit-learn's ``predict_proba``: the standardization, then ``LogisticRegression``'s sigmoid (two classes) or
softmax (tests compare the two); ``dense`` is its Keras model's forward pass: ``Normalization``, ``Flatten``,
``Dense`` + ReLU per hidden layer (``Dropout`` does nothing at inference), ``Dense`` + softmax.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np


def _proba(z: np.ndarray) -> np.ndarray:
    """``LogisticRegression.predict_proba`` from decision values ``z`` (n, 1 or classes)."""
    if z.shape[1] == 1:
        p = np.exp(-np.logaddexp(0.0, -z[:, 0]))  # the sigmoid, without overflow
        return np.column_stack([1.0 - p, p])
    return _softmax(z)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _standardized(state: dict, X: np.ndarray) -> np.ndarray:
    return (np.asarray(X).reshape(len(X), -1) - state["mean"]) / state["scale"]


def _logreg(state: dict) -> Callable[[np.ndarray], np.ndarray]:
    return lambda X: _proba(_standardized(state, X) @ state["coef"].T + state["intercept"])


def _svm(state: dict) -> Callable[[np.ndarray], np.ndarray]:
    def proba(X: np.ndarray) -> np.ndarray:
        decisions = _standardized(state, X) @ state["coef"].T + state["intercept"]
        return _proba(decisions @ state["cal_coef"].T + state["cal_intercept"])

    return proba


def _dense(state: dict) -> Callable[[np.ndarray], np.ndarray]:
    layers = _dense_layers(state)

    def proba(X: np.ndarray) -> np.ndarray:
        h = ((np.asarray(X, np.float32) - state["mean"]) / state["scale"]).reshape(len(X), -1)
        for i in range(layers - 1):
            h = np.maximum(h @ state[f"kernel_{i}"] + state[f"bias_{i}"], 0.0)
        return _softmax(h @ state[f"kernel_{layers - 1}"] + state[f"bias_{layers - 1}"])

    return proba


def _dense_layers(state: dict) -> int:
    """How many ``Dense`` layers a dense head's arrays hold, after checking that they chain: each kernel's
    width is the next one's height, each bias fits its kernel, the last width is the number of classes, and
    the standardization's mean and scale have one shape."""
    layers = sum(1 for k in state if k.startswith("kernel_"))
    kernels = [state[f"kernel_{i}"] for i in range(layers)]
    biases = [state[f"bias_{i}"] for i in range(layers)]
    if (not layers or state["mean"].shape != state["scale"].shape or any(k.ndim != 2 for k in kernels)
            or any(b.shape != (k.shape[1],) for k, b in zip(kernels, biases))
            or any(a.shape[1] != b.shape[0] for a, b in zip(kernels, kernels[1:]))
            or kernels[-1].shape[1] != len(state["classes"])):
        raise ValueError("the arrays of head.npz do not chain into a network")
    return layers


PREDICTORS = {"logreg": _logreg, "svm": _svm, "dense": _dense}


def input_widths(directory: str | Path) -> set[int]:
    """The feature widths (values per image) the arrays of ``directory/head.npz`` take: its standardization's,
    its linear coefficients' and its first kernel's (empty without that file or those arrays)."""
    path = Path(directory) / "head.npz"
    if not path.exists():
        return set()
    with np.load(path, allow_pickle=False) as f:
        found = {k: f[k].shape for k in ("mean", "coef", "kernel_0") if k in f.files}
    widths = {int(np.prod(found["mean"]))} if "mean" in found else set()
    if len(found.get("coef", ())) == 2:
        widths.add(found["coef"][1])
    if len(found.get("kernel_0", ())) == 2:
        widths.add(found["kernel_0"][0])
    return widths


def load(name: str, directory: str | Path) -> tuple[Callable[[np.ndarray], np.ndarray], int] | None:
    """``(predict_proba, number of classes)`` of the ``name`` head saved in ``directory``; None for a head
    that is not one of :data:`PREDICTORS`, or a ``dense`` head saved before it wrote its arrays."""
    if name not in PREDICTORS or not (Path(directory) / "head.npz").exists():
        return None
    with np.load(Path(directory) / "head.npz", allow_pickle=False) as f:
        state = {k: f[k] for k in f.files}
    return PREDICTORS[name](state), len(state["classes"])

"""Probabilities of the saved linear heads (``logreg``, ``svm``) from their ``head.npz`` arrays, with numpy alone.

Importing scikit-learn (and the SciPy and pandas it imports) is most of a fresh ``transfer predict``'s start-up,
while a linear head's probabilities are a few products. These are scikit-learn's ``predict_proba``: the
standardization, then ``LogisticRegression``'s sigmoid (two classes) or softmax (tests compare the two).
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


PREDICTORS = {"logreg": _logreg, "svm": _svm}


def load(name: str, directory: str | Path) -> tuple[Callable[[np.ndarray], np.ndarray], int] | None:
    """``(predict_proba, number of classes)`` of the ``name`` head saved in ``directory``; None for a head
    that is not one of :data:`PREDICTORS`."""
    if name not in PREDICTORS:
        return None
    with np.load(Path(directory) / "head.npz", allow_pickle=False) as f:
        state = {k: f[k] for k in f.files}
    return PREDICTORS[name](state), len(state["classes"])

"""Fitting the linear heads on rows that do not fit in memory.

One pass fits the standardization on every row and keeps a random sample of about :data:`SAMPLE_BYTES`; the
hyperparameter is chosen on the sample (by the head's in-memory search); then the head's own objective on all
rows (``C * sum(loss) + ||W||^2 / 2``, scikit-learn's) is minimized by SciPy's L-BFGS, warm-started from the
sample's fit, each evaluation one chunked pass.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.optimize import minimize
from sklearn.preprocessing import StandardScaler

from ..rows import Rows

SAMPLE_BYTES = 256 << 20  # the in-memory sample hyperparameters are chosen on

Loss = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]  # (scores, targets) -> (losses, d/dscores)


def samples(train: Rows, val: Rows | None, seed: int) -> tuple:
    """``(scaler, X, y, groups, X_val, y_val)``: in one pass over train, a scaler fitted on every row and a
    uniform random sample of about :data:`SAMPLE_BYTES` (rows as stored, with their image hashes); and a random
    sample of val as large (None, None without val)."""
    rng = np.random.default_rng(seed)
    keep = min(1.0, SAMPLE_BYTES / max(1, train.nbytes))
    scaler, kept, offset = StandardScaler(), [], 0
    for X, _ in train.chunks():
        scaler.partial_fit(X.reshape(len(X), -1))
        kept.append(offset + np.flatnonzero(rng.random(len(X)) < keep))
        offset += len(X)
    sample = train.subset(np.concatenate(kept))
    X_val = y_val = None
    if val is not None and len(val):
        most = max(1, SAMPLE_BYTES * len(val) // max(1, val.nbytes))
        val = val.subset(np.sort(rng.choice(len(val), min(len(val), most), replace=False)))
        X_val, y_val = val.held(), val.y
    return scaler, sample.held(), sample.y, sample.groups, X_val, y_val


def standardize(scaler: StandardScaler, X: np.ndarray) -> np.ndarray:
    """Rows (flattened) standardized by ``scaler``, as float32."""
    return (X.reshape(len(X), -1) - scaler.mean_.astype(np.float32)) / scaler.scale_.astype(np.float32)


def softmax_loss(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial log-loss; ``targets`` one-hot."""
    scores = scores - scores.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(scores).sum(axis=1, keepdims=True))
    return (log_norm - scores)[targets.astype(bool)], np.exp(scores - log_norm) - targets


def logistic_loss(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binary log-loss on one column of scores; ``targets`` 1 / 0."""
    sign = 2 * targets - 1
    margin = sign * scores
    return np.logaddexp(0, -margin).sum(axis=1), -sign / (1 + np.exp(margin))


def squared_hinge_loss(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-vs-rest squared hinge (``LinearSVC``'s); ``targets`` 1 / 0 per column."""
    sign = 2 * targets - 1
    slack = np.maximum(0, 1 - sign * scores)
    return (slack ** 2).sum(axis=1), -2 * sign * slack


def targets(y: np.ndarray, classes: np.ndarray, columns: int) -> np.ndarray:
    """One-hot targets of labels ``y`` (one column, the second class, when ``columns`` is 1)."""
    onehot = (y[:, None] == classes[None, :]).astype(np.float32)
    return onehot[:, 1:] if columns == 1 else onehot


def fit_full(rows: Rows, scaler: StandardScaler, loss: Loss, coef: np.ndarray, intercept: np.ndarray,
             classes: np.ndarray, C: float, class_weight: dict | None, max_iter: int,
             penalize_intercept: bool = False) -> tuple[np.ndarray, np.ndarray, int]:
    """``(coef, intercept, iterations)`` minimizing ``mean(weight * loss) + ||coef||^2 / (2 C n)`` over the
    ``n`` rows (scikit-learn's objective for L-BFGS, and its ``tol``), from the given start; ``coef`` is
    (columns, features)."""
    columns, width = coef.shape
    n = len(rows)
    weight_of = np.array([(class_weight or {}).get(c, 1.0) for c in classes.tolist()], np.float64)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W, b = theta[:-columns].reshape(columns, width), theta[-columns:]
        # scores of standardized rows, (x - mean) / scale @ W.T + b, computed on the rows as read
        W_raw = (W / scaler.scale_).astype(np.float32)
        b_raw = (b - W_raw @ scaler.mean_).astype(np.float32)
        value, g_raw, gb = 0.0, np.zeros((columns, width)), np.zeros(columns)
        for X, y in rows.chunks():
            X = X.reshape(len(X), -1)
            losses, grad = loss(X @ W_raw.T + b_raw, targets(y, classes, columns))
            w = weight_of[np.searchsorted(classes, y)]
            value += float(w @ losses)
            grad = (grad * w[:, None]).astype(np.float32)
            g_raw += grad.T @ X
            gb += grad.sum(axis=0)
        gW = (g_raw - np.outer(gb, scaler.mean_)) / scaler.scale_  # back to standardized coordinates
        b_penalty = b if penalize_intercept else 0 * b
        value = value / n + ((W ** 2).sum() + (b_penalty ** 2).sum()) / (2 * C * n)
        return value, np.concatenate([(gW / n + W / (C * n)).ravel(), gb / n + b_penalty / (C * n)])

    start = np.concatenate([coef.ravel(), intercept.ravel()]).astype(np.float64)
    result = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": max_iter, "gtol": 1e-4})
    return result.x[:-columns].reshape(columns, width), result.x[-columns:], int(result.nit)

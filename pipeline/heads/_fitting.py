"""What the heads share while fitting: flat rows, label checks, class weights, folds for model selection."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from ..errors import PipelineError

Folds = list[tuple[np.ndarray, np.ndarray]]


def flat(X: np.ndarray) -> np.ndarray:
    """Feature maps ``(N, H, W, D)`` as rows ``(N, H*W*D)`` (the order Keras ``Flatten`` uses), checked finite."""
    X = check_X(X)
    return X.reshape(len(X), -1)


def check_X(X) -> np.ndarray:
    """``X`` as float32, refused when it holds NaN or infinite values (a head would learn nothing from them)."""
    X = np.asarray(X, dtype=np.float32)
    if not np.isfinite(X).all():
        raise PipelineError("the features hold NaN or infinite values; extract them again")
    return X


def check_y(y: np.ndarray) -> np.ndarray:
    """``y`` as an array, refused when it holds fewer than two classes."""
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        raise PipelineError("train has fewer than 2 classes; a classifier needs at least two class folders")
    return y


def balanced(class_weight, y: np.ndarray):
    """``"balanced"`` as explicit weights from train labels (CV tools would count val labels too)."""
    if class_weight != "balanced":
        return class_weight
    from sklearn.utils.class_weight import compute_class_weight

    classes = np.unique(y)
    return dict(zip(classes.tolist(), compute_class_weight("balanced", classes=classes, y=y)))


def kfold(y: np.ndarray, groups: np.ndarray | None, random_state: int, most: int) -> Folds:
    """Stratified folds of train that keep every image's views together."""
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    per_class = min(len(np.unique(groups[y == c])) for c in np.unique(y))
    if per_class < 2:
        raise PipelineError("cross-validation needs at least 2 train images per class; add images or a val/ split")
    cv = StratifiedGroupKFold(n_splits=min(most, per_class), shuffle=True, random_state=random_state)
    return list(cv.split(np.zeros(len(y)), y, groups))


def selection_data(X, y, X_val, y_val, groups, random_state: int,
                   most: int = 5) -> tuple[np.ndarray, np.ndarray, Folds]:
    """``(X_all, y_all, folds)`` for scikit-learn's CV tools: one train->val fold, or k folds of train."""
    if X_val is None or len(X_val) == 0:
        return X, y, kfold(y, groups, random_state, most)
    n, m = len(X), len(X_val)
    return np.concatenate([X, X_val]), np.concatenate([y, y_val]), [(np.arange(n), np.arange(n, n + m))]

"""What the heads share while fitting: checked rows and labels, class weights, folds for model selection."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils import check_array, column_or_1d
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from ..errors import InvalidInput

Folds = list[tuple[np.ndarray, np.ndarray]]


def rows(X):
    """Feature maps ``(N, H, W, D)`` as rows ``(N, H*W*D)`` (the order Keras ``Flatten`` uses); any other
    input unchanged, for scikit-learn's checks to accept or refuse (1-D ``X``, sparse matrices, ...)."""
    return X.reshape(len(X), -1) if len(getattr(X, "shape", ())) > 2 else X


def fit_data(head, X, y, X_val=None, y_val=None) -> tuple:
    """``(X, y, X_val, y_val)`` checked as scikit-learn estimators check them (``n_features_in_`` set on
    ``head``), ``X`` and ``X_val`` as float32 rows, an empty val as None; refused when train holds a single
    class."""
    X, y = validate_data(head, rows(X), y, dtype=np.float32)
    check_classification_targets(y)
    if len(np.unique(y)) < 2:
        raise InvalidInput("train has only 1 class; a classifier needs at least two class folders")
    if X_val is not None:
        X_val = check_array(rows(X_val), dtype=np.float32, ensure_min_samples=0)
        y_val = column_or_1d(y_val)
    return (X, y, X_val, y_val) if X_val is not None and len(X_val) else (X, y, None, None)


def predict_data(head, X) -> np.ndarray:
    """``X`` as float32 rows of the width ``head`` was fitted on (scikit-learn's checks and messages)."""
    return validate_data(head, rows(X), dtype=np.float32, reset=False)


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
        raise InvalidInput("cross-validation needs at least 2 train images per class; add images or a val/ split")
    cv = StratifiedGroupKFold(n_splits=min(most, per_class), shuffle=True, random_state=random_state)
    return list(cv.split(np.zeros(len(y)), y, groups))


def selection_data(X, y, X_val, y_val, groups, random_state: int,
                   most: int = 5) -> tuple[np.ndarray, np.ndarray, Folds]:
    """``(X_all, y_all, folds)`` for scikit-learn's CV tools: one train->val fold, or k folds of train."""
    if X_val is None or len(X_val) == 0:
        return X, y, kfold(y, groups, random_state, most)
    n, m = len(X), len(X_val)
    return np.concatenate([X, X_val]), np.concatenate([y, y_val]), [(np.arange(n), np.arange(n, n + m))]

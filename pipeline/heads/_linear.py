"""What the standardized linear heads share: fitted scikit-learn parts rebuilt from arrays, and the
standardization folded into the linear layer on export."""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import StandardScaler

from ._fitting import fit_data


def standardized(head, X, y, X_val, y_val) -> tuple:
    """Check and flatten the data, fit ``head.scaler_`` on train, and give ``(X, y, X_val, y_val)`` with ``X``
    and ``X_val`` standardized."""
    X, y, X_val, y_val = fit_data(head, X, y, X_val, y_val)
    head.scaler_ = StandardScaler().fit(X)
    return head.scaler_.transform(X), y, None if X_val is None else head.scaler_.transform(X_val), y_val


def restore(estimator, **attrs):
    """``estimator`` with its fitted attributes set from saved arrays."""
    for name, value in attrs.items():
        setattr(estimator, name, value)
    return estimator


def scaler(mean: np.ndarray, scale: np.ndarray) -> StandardScaler:
    """A fitted ``StandardScaler`` from its mean and scale."""
    return restore(StandardScaler(), mean_=mean, scale_=scale, var_=scale ** 2, n_features_in_=len(mean),
                   n_samples_seen_=np.int64(1))


def linear(cls, coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray, **params):
    """A fitted linear scikit-learn classifier of class ``cls`` from its coefficients."""
    return restore(cls(**params), coef_=coef, intercept_=intercept, classes_=classes, n_features_in_=coef.shape[1])


def fold(scaler: StandardScaler, coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``coef @ ((x - mean) / scale) + b`` as ``coef' @ x + b'``."""
    folded = coef / scaler.scale_[None, :]
    return folded, intercept - folded @ scaler.mean_


def refold(scaler: StandardScaler, into: StandardScaler, coef: np.ndarray,
           intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients on rows standardized by ``scaler`` as the same function of rows standardized by ``into``."""
    folded, b = fold(scaler, coef, intercept)
    return folded * into.scale_[None, :], b + folded @ into.mean_


def flatten(feature_shape) -> list:
    """A Keras ``Flatten`` when the features are maps (nothing for pooled vectors)."""
    import keras

    return [keras.layers.Flatten(name="flatten")] if len(feature_shape) > 1 else []

"""``ridge``: standardize, ridge classifier (``alpha`` chosen by ``RidgeClassifierCV``), probabilities by
Platt scaling."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeClassifier, RidgeClassifierCV
from sklearn.model_selection import cross_val_predict
from sklearn.preprocessing import StandardScaler

from ..layers import fixed_dense, softmax_dense
from . import _linear
from ._fitting import balanced, check_y, flat, kfold, one_blas_thread, selection_data
from .base import Head


class RidgeHead(Head):
    """Standardize, least-squares classifier on ±1 targets with an L2 penalty ``alpha``; Platt-scaled.

    ``alpha`` is chosen on val (or by cross-validation on train) and the classifier refitted on train
    only; a logistic regression on its decision values of val (or cross-validated ones of train) gives
    the probabilities. Exported as a ``Dense`` of decision values and the calibrator's softmax ``Dense``.
    """

    name = "ridge"

    def __init__(self, alphas=(1e-1, 1.0, 10.0, 100.0, 1e3, 1e4), class_weight=None, random_state: int = 0):
        self.alphas, self.class_weight, self.random_state = alphas, class_weight, random_state

    @one_blas_thread
    def fit(self, X, y, X_val=None, y_val=None, groups=None) -> "RidgeHead":
        X, y = flat(X), check_y(y)
        X_val = None if X_val is None else flat(X_val)
        self.scaler_ = StandardScaler().fit(X)
        X_all, y_all, folds = selection_data(X, y, X_val, y_val, groups, self.random_state)
        weights = balanced(self.class_weight, y)
        cv = RidgeClassifierCV(alphas=list(self.alphas), cv=folds, class_weight=weights)
        self.alpha_ = float(cv.fit(self.scaler_.transform(X_all), y_all).alpha_)
        Xs = self.scaler_.transform(X)
        fitted = RidgeClassifier(alpha=self.alpha_, class_weight=weights).fit(Xs, y)
        self.coef_, self.intercept_ = fitted.coef_, np.atleast_1d(fitted.intercept_)
        if X_val is None or len(X_val) == 0:
            y_cal = y
            decisions = cross_val_predict(RidgeClassifier(alpha=self.alpha_, class_weight=weights), Xs, y,
                                          cv=kfold(y, groups, self.random_state, 3), method="decision_function")
        else:
            y_cal = y_val
            decisions = self._decisions(self.scaler_.transform(X_val))
        self.calibrator_ = LogisticRegression(max_iter=1000).fit(decisions.reshape(len(y_cal), -1), y_cal)
        self.classes_ = fitted.classes_
        return self

    def _decisions(self, Xs: np.ndarray) -> np.ndarray:
        return Xs @ self.coef_.T + self.intercept_

    def _predict_proba(self, X) -> np.ndarray:
        decisions = self._decisions(self.scaler_.transform(flat(X)))
        return self.calibrator_.predict_proba(decisions.reshape(len(decisions), -1))

    def selected(self) -> dict:
        return {"alpha": self.alpha_}

    def state(self) -> dict:
        return {"mean": self.scaler_.mean_, "scale": self.scaler_.scale_, "coef": self.coef_,
                "intercept": self.intercept_, "classes": self.classes_, "alpha": np.float64(self.alpha_),
                "cal_coef": self.calibrator_.coef_, "cal_intercept": self.calibrator_.intercept_}

    def restore(self, state: dict) -> "RidgeHead":
        self.scaler_ = _linear.scaler(state["mean"], state["scale"])
        self.alpha_ = float(state["alpha"])
        self.coef_, self.intercept_ = state["coef"], state["intercept"]
        self.calibrator_ = _linear.linear(LogisticRegression, state["cal_coef"], state["cal_intercept"],
                                          state["classes"])
        self.classes_ = state["classes"]
        return self

    def _export_layers(self, feature_shape: tuple) -> list:
        coef, intercept = _linear.fold(self.scaler_, self.coef_, self.intercept_)
        return _linear.flatten(feature_shape) + [
            fixed_dense(coef.T, intercept, "ridge_decision"),
            softmax_dense(self.calibrator_.coef_, self.calibrator_.intercept_, "probabilities")]

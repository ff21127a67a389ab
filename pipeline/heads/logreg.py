"""``logreg``: standardize, then logistic regression with ``C`` chosen by log-loss."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Annotated

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import log_loss

from .._blas import one_blas_thread
from .._fixed_dense import softmax_dense
from . import _linear, _streaming
from ._fitting import balanced, selection_data
from ._options import CLASS_WEIGHT
from .base import Head

if TYPE_CHECKING:
    from ..rows import Rows


class LogRegHead(Head):
    """Standardize, then logistic regression with ``C`` of ``Cs`` chosen by ``LogisticRegressionCV`` (log-loss).

    Exported as one softmax ``Dense`` layer with the standardization folded in.
    """

    name = "logreg"

    def __init__(self, Cs=(1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0),
                 class_weight: Annotated[str | None, CLASS_WEIGHT] = None, max_iter: int = 500, random_state: int = 0):
        self.Cs, self.class_weight, self.max_iter, self.random_state = Cs, class_weight, max_iter, random_state

    @one_blas_thread
    def fit(self, X, y, X_val=None, y_val=None, groups=None) -> "LogRegHead":
        X, y, X_val, y_val = _linear.standardized(self, X, y, X_val, y_val)
        weights = balanced(self.class_weight, y)
        if len(self.Cs) == 1:  # nothing to choose
            fitted = LogisticRegression(C=self.Cs[0], class_weight=weights, max_iter=self.max_iter,
                                        random_state=self.random_state).fit(X, y)
        elif X_val is not None:
            fitted = self._path_on_val(X, y, X_val, y_val, weights)
        else:
            X_all, y_all, folds = selection_data(X, y, X_val, y_val, groups, self.random_state)
            fitted = LogisticRegressionCV(Cs=list(self.Cs), cv=folds, scoring="neg_log_loss", refit=True,
                                          l1_ratios=(0.0,), use_legacy_attributes=False, class_weight=weights,
                                          max_iter=self.max_iter, random_state=self.random_state)
            fitted.fit(X_all, y_all)
        self.C_ = float(fitted.C_ if isinstance(fitted, LogisticRegressionCV) else fitted.C)
        self.n_iter_ = int(np.max(fitted.n_iter_))  # the longest of its fits
        self.model_ = _linear.linear(LogisticRegression, fitted.coef_, fitted.intercept_, fitted.classes_, C=self.C_)
        self.classes_ = fitted.classes_
        return self

    def _path_on_val(self, X, y, X_val, y_val, weights) -> LogisticRegression:
        """The fit on train, among one per ``C`` of ``Cs`` (each warm-started from the last, as
        ``LogisticRegressionCV`` does), whose probabilities on val have the lowest log-loss; no copy of the rows."""
        model = LogisticRegression(class_weight=weights, max_iter=self.max_iter, random_state=self.random_state,
                                   warm_start=True)
        best, best_loss = None, np.inf
        for C in self.Cs:
            model.set_params(C=C).fit(X, y)
            loss = log_loss(y_val, model.predict_proba(X_val), labels=model.classes_)
            if loss < best_loss:
                best, best_loss = copy.deepcopy(model), loss
        return best

    def fit_streaming(self, train: Rows, val: Rows | None = None) -> "LogRegHead":
        """``C`` chosen as ``fit`` chooses it, on a random sample of train (and of val); then every train row
        fitted at that ``C`` by chunked L-BFGS, warm-started from the sample's coefficients."""
        scaler, X, y, groups, X_val, y_val = _streaming.samples(train, val, self.random_state)
        on_sample = clone(self).fit(X, y, X_val, y_val, groups=groups)
        coef, intercept = _linear.refold(on_sample.scaler_, scaler, on_sample.model_.coef_, on_sample.model_.intercept_)
        classes = on_sample.classes_
        loss = _streaming.logistic_loss if len(classes) == 2 else _streaming.softmax_loss
        coef, intercept, self.n_iter_ = _streaming.fit_full(train, scaler, loss, coef, intercept, classes,
                                                            on_sample.C_, balanced(self.class_weight, train.y),
                                                            self.max_iter)
        self.scaler_, self.C_, self.classes_, self.n_features_in_ = scaler, on_sample.C_, classes, coef.shape[1]
        self.model_ = _linear.linear(LogisticRegression, coef, intercept, classes, C=self.C_)
        return self

    def _predict_proba(self, X) -> np.ndarray:
        return self.model_.predict_proba(self.scaler_.transform(X))

    def selected(self) -> dict:
        return {"C": self.C_}

    def state(self) -> dict:
        return {"mean": self.scaler_.mean_, "scale": self.scaler_.scale_, "coef": self.model_.coef_,
                "intercept": self.model_.intercept_, "classes": self.classes_, "C": np.float64(self.C_)}

    def restore(self, state: dict) -> "LogRegHead":
        self.scaler_ = _linear.scaler(state["mean"], state["scale"])
        self.C_ = float(state["C"])
        self.model_ = _linear.linear(LogisticRegression, state["coef"], state["intercept"], state["classes"], C=self.C_)
        self.classes_, self.n_features_in_ = state["classes"], len(state["mean"])
        return self

    def _export_layers(self, feature_shape: tuple) -> list:
        coef, intercept = _linear.fold(self.scaler_, self.model_.coef_, self.model_.intercept_)
        return _linear.flatten(feature_shape) + [softmax_dense(coef, intercept, "probabilities")]

"""``svm``: standardize, linear SVM, probabilities by Platt scaling."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_predict
from sklearn.svm import LinearSVC

from .._blas import one_blas_thread
from .._fixed_dense import fixed_dense, softmax_dense
from . import _linear, _streaming
from ._fitting import balanced, kfold, selection_data
from ._options import CLASS_WEIGHT
from .base import Head

if TYPE_CHECKING:
    from ..rows import Rows


class SVMHead(Head):
    """Standardize, linear SVM (``C`` of ``Cs`` chosen by ``GridSearchCV``), probabilities by Platt scaling.

    Platt scaling: a logistic regression on the SVM's decision values of val (or, without val, on
    cross-validated decision values of train), weighted by ``class_weight`` as the SVM is. Exported as a
    ``Dense`` of decision values (standardization folded in) followed by the calibrator's softmax ``Dense``.
    """

    name = "svm"

    def __init__(self, Cs=(1e-4, 1e-3, 1e-2), class_weight: Annotated[str | None, CLASS_WEIGHT] = None,
                 random_state: int = 0):
        self.Cs, self.class_weight, self.random_state = Cs, class_weight, random_state

    def _svc(self, C: float) -> LinearSVC:
        return LinearSVC(C=C, class_weight=self.class_weight, random_state=self.random_state, max_iter=5000)

    @one_blas_thread
    def fit(self, X, y, X_val=None, y_val=None, groups=None) -> "SVMHead":
        X, y, X_val, y_val = _linear.standardized(self, X, y, X_val, y_val)
        self.C_ = float(self.Cs[0]) if len(self.Cs) == 1 else self._search_C(X, y, X_val, y_val, groups)
        self.svc_ = self._svc(self.C_).fit(X, y)
        if X_val is None or len(X_val) == 0:
            y_cal = y
            decisions = cross_val_predict(self._svc(self.C_), X, y, cv=kfold(y, groups, self.random_state, 3),
                                          method="decision_function")
        else:  # held-out val decisions, as CalibratedClassifierCV does with a prefit model
            y_cal = y_val
            decisions = self.svc_.decision_function(X_val)
        calibrator = LogisticRegression(max_iter=1000, class_weight=balanced(self.class_weight, y))
        self.calibrator_ = calibrator.fit(decisions.reshape(len(y_cal), -1), y_cal)
        self.classes_ = self.svc_.classes_
        return self

    def fit_streaming(self, train: Rows, val: Rows | None = None) -> "SVMHead":
        """``C`` and the calibration as ``fit`` makes them, on a random sample of train (and of val); then every
        train row fitted at that ``C`` by chunked L-BFGS on the SVM's squared hinge, warm-started from the
        sample's coefficients, and the calibration refitted on the sample of val when there is one."""
        scaler, X, y, groups, X_val, y_val = _streaming.samples(train, val, self.random_state)
        on_sample = clone(self).fit(X, y, X_val, y_val, groups=groups)
        coef, intercept = _linear.refold(on_sample.scaler_, scaler, on_sample.svc_.coef_, on_sample.svc_.intercept_)
        self.classes_, self.C_, self.scaler_ = on_sample.classes_, on_sample.C_, scaler
        coef, intercept, _ = _streaming.fit_full(train, scaler, _streaming.squared_hinge_loss, coef, intercept,
                                                 self.classes_, self.C_, balanced(self.class_weight, train.y),
                                                 max_iter=1000, penalize_intercept=True)
        self.svc_ = _linear.linear(LinearSVC, coef, intercept, self.classes_, C=self.C_)
        self.calibrator_, self.n_features_in_ = on_sample.calibrator_, coef.shape[1]
        if X_val is not None:
            decisions = self.svc_.decision_function(_streaming.standardize(scaler, X_val))
            calibrator = LogisticRegression(max_iter=1000, class_weight=balanced(self.class_weight, train.y))
            self.calibrator_ = calibrator.fit(decisions.reshape(len(y_val), -1), y_val)
        return self

    def _search_C(self, X, y, X_val, y_val, groups) -> float:
        """The ``C`` of ``Cs`` that classifies val (or cross-validation folds of train) best."""
        X_all, y_all, folds = selection_data(X, y, X_val, y_val, groups, self.random_state)
        search = GridSearchCV(self._svc(1.0), {"C": list(self.Cs)}, cv=folds, refit=False).fit(X_all, y_all)
        return float(search.best_params_["C"])

    def _predict_proba(self, X) -> np.ndarray:
        decisions = self.svc_.decision_function(self.scaler_.transform(X))
        return self.calibrator_.predict_proba(decisions.reshape(len(decisions), -1))

    def selected(self) -> dict:
        return {"C": self.C_}

    def state(self) -> dict:
        return {"mean": self.scaler_.mean_, "scale": self.scaler_.scale_, "coef": self.svc_.coef_,
                "intercept": self.svc_.intercept_, "classes": self.classes_, "C": np.float64(self.C_),
                "cal_coef": self.calibrator_.coef_, "cal_intercept": self.calibrator_.intercept_}

    def restore(self, state: dict) -> "SVMHead":
        self.scaler_ = _linear.scaler(state["mean"], state["scale"])
        self.C_ = float(state["C"])
        self.svc_ = _linear.linear(LinearSVC, state["coef"], state["intercept"], state["classes"], C=self.C_)
        self.calibrator_ = _linear.linear(LogisticRegression, state["cal_coef"], state["cal_intercept"],
                                          state["classes"])
        self.classes_, self.n_features_in_ = state["classes"], len(state["mean"])
        return self

    def _export_layers(self, feature_shape: tuple) -> list:
        coef, intercept = _linear.fold(self.scaler_, self.svc_.coef_, self.svc_.intercept_)
        return _linear.flatten(feature_shape) + [
            fixed_dense(coef.T, intercept, "svm_decision"),
            softmax_dense(self.calibrator_.coef_, self.calibrator_.intercept_, "probabilities")]

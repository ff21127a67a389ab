"""``knn``: k nearest neighbours by cosine distance; kept as its train rows, so it is not exportable."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier

from .._blas import one_blas_thread
from ..errors import PipelineError
from ._fitting import fit_data, selection_data
from .base import Head


class KNNHead(Head):
    """k nearest neighbours by cosine distance, ``k`` of ``ks`` chosen by ``GridSearchCV``.

    The fitted head keeps the train rows ``X_`` and labels ``y_`` it votes among.
    """

    name = "knn"

    def __init__(self, ks=(1, 3, 5, 9, 15), weights: str = "distance", class_weight=None, random_state: int = 0):
        self.ks, self.weights, self.class_weight, self.random_state = ks, weights, class_weight, random_state

    def _knn(self, k: int) -> KNeighborsClassifier:
        return KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute", weights=self.weights)

    @one_blas_thread
    def fit(self, X, y, X_val=None, y_val=None, groups=None) -> "KNNHead":
        if self.class_weight is not None:
            raise PipelineError("knn has no class weights; use --head logreg, svm or dense with --class-weight")
        X, y, X_val, y_val = fit_data(self, X, y, X_val, y_val)
        k = self.ks[0] if len(self.ks) == 1 else self._search_k(X, y, X_val, y_val, groups)
        return self.restore({"X": X, "y": y, "k": np.int64(min(k, len(X)))})

    def _search_k(self, X, y, X_val, y_val, groups) -> int:
        """The ``k`` of ``ks`` (those each fold's train holds enough rows for) that classifies best."""
        X_all, y_all, folds = selection_data(X, y, X_val, y_val, groups, self.random_state)
        smallest = min(len(train) for train, _ in folds)
        ks = [k for k in self.ks if k <= smallest] or [1]
        search = GridSearchCV(self._knn(1), {"n_neighbors": ks}, cv=folds, refit=False).fit(X_all, y_all)
        return int(search.best_params_["n_neighbors"])

    def _predict_proba(self, X) -> np.ndarray:
        return self.model_.predict_proba(X)

    def selected(self) -> dict:
        return {"k": self.k_}

    def state(self) -> dict:
        return {"X": self.X_, "y": self.y_, "k": np.int64(self.k_)}

    def restore(self, state: dict) -> "KNNHead":
        self.X_, self.y_, self.k_ = state["X"], state["y"], int(state["k"])
        self.model_ = self._knn(self.k_).fit(self.X_, self.y_)  # a k-NN's fit only stores its rows
        self.classes_, self.n_features_in_ = self.model_.classes_, self.X_.shape[1]
        return self

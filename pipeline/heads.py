"""Stage two classifiers behind the scikit-learn estimator API, one registry by name.

Every head takes its options in ``__init__``, learns in ``fit(X, y, X_val=None, y_val=None, groups=None)``
and offers ``predict`` / ``predict_proba`` / ``score``. Hyperparameters are chosen on the val split when
one is given (the head is then fitted on train only), otherwise by cross-validation on train, with
``groups`` (the image hash) keeping the augmented views of one image in one fold.

Fitted state is saved without pickle: ``head.keras`` (loaded with ``safe_mode=True``) for ``dense``,
plain arrays in ``head.npz`` (``allow_pickle=False``) for the scikit-learn heads.

Examples
--------
>>> head = make_head("logreg").fit(X_train, y_train, X_val, y_val)     # doctest: +SKIP
>>> head.score(X_test, y_test)                                         # doctest: +SKIP
0.97
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from .errors import PipelineError

Folds = list[tuple[np.ndarray, np.ndarray]]


def one_blas_thread(method):
    """Run ``method`` with one BLAS thread: these matrices are small, and on a busy machine competing BLAS
    threads made logistic regression 20 times slower."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return method(*args, **kwargs)

    return wrapper


def flat(X: np.ndarray) -> np.ndarray:
    """Feature maps ``(N, H, W, D)`` as rows ``(N, H*W*D)`` (the order Keras ``Flatten`` uses)."""
    X = np.asarray(X, dtype=np.float32)
    return X.reshape(len(X), -1)


def _kfold(y: np.ndarray, groups: np.ndarray | None, seed: int, most: int) -> Folds:
    """Stratified folds of train that keep every image's views together."""
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    per_class = min(len(np.unique(groups[y == c])) for c in np.unique(y))
    if per_class < 2:
        raise PipelineError("cross-validation needs at least 2 train images per class; add images or a val/ split")
    cv = StratifiedGroupKFold(n_splits=min(most, per_class), shuffle=True, random_state=seed)
    return list(cv.split(np.zeros(len(y)), y, groups))


def selection_data(X, y, X_val, y_val, groups, seed: int, most: int = 5) -> tuple[np.ndarray, np.ndarray, Folds]:
    """``(X_all, y_all, folds)`` for scikit-learn's CV tools: one train->val fold, or k folds of train."""
    if X_val is None or len(X_val) == 0:
        return X, y, _kfold(y, groups, seed, most)
    n, m = len(X), len(X_val)
    return np.concatenate([X, X_val]), np.concatenate([y, y_val]), [(np.arange(n), np.arange(n, n + m))]


def _check_y(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        raise PipelineError("train has fewer than 2 classes; a classifier needs at least two class folders")
    return y


def _balanced(class_weight, y: np.ndarray):
    """``"balanced"`` as explicit weights from train labels (CV tools would count val labels too)."""
    if class_weight != "balanced":
        return class_weight
    from sklearn.utils.class_weight import compute_class_weight

    classes = np.unique(y)
    return dict(zip(classes.tolist(), compute_class_weight("balanced", classes=classes, y=y)))


def _restore(estimator, **attrs):
    for name, value in attrs.items():
        setattr(estimator, name, value)
    return estimator


def _scaler(mean: np.ndarray, scale: np.ndarray) -> StandardScaler:
    return _restore(StandardScaler(), mean_=mean, scale_=scale, var_=scale ** 2, n_features_in_=len(mean),
                    n_samples_seen_=np.int64(1))


def _linear(cls, coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray, **params):
    return _restore(cls(**params), coef_=coef, intercept_=intercept, classes_=classes, n_features_in_=coef.shape[1])


class _SklearnHead(ClassifierMixin, BaseEstimator):
    """Shared behaviour of the scikit-learn heads: flatten maps, predict from ``predict_proba``."""

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def save(self, directory: Path) -> Path:
        path = Path(directory) / "head.npz"
        np.savez(path, **self.state())
        return path

    @classmethod
    def load(cls, directory: Path, params: dict) -> "_SklearnHead":
        with np.load(Path(directory) / "head.npz", allow_pickle=False) as f:
            return cls(**params).restore({k: f[k] for k in f.files})


class LogRegHead(_SklearnHead):
    """Standardize, then logistic regression with ``C`` chosen by ``LogisticRegressionCV`` (log-loss)."""

    def __init__(self, Cs=(1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0), class_weight=None, max_iter: int = 500,
                 seed: int = 0):
        self.Cs, self.class_weight, self.max_iter, self.seed = Cs, class_weight, max_iter, seed

    @one_blas_thread
    def fit(self, X, y, X_val=None, y_val=None, groups=None) -> "LogRegHead":
        X, y = flat(X), _check_y(y)
        X_val = None if X_val is None else flat(X_val)
        self.scaler_ = StandardScaler().fit(X)
        X_all, y_all, folds = selection_data(X, y, X_val, y_val, groups, self.seed)
        cv = LogisticRegressionCV(Cs=list(self.Cs), cv=folds, scoring="neg_log_loss", refit=len(folds) > 1,
                                  l1_ratios=(0.0,), use_legacy_attributes=False,
                                  class_weight=_balanced(self.class_weight, y),
                                  max_iter=self.max_iter, random_state=self.seed)
        cv.fit(self.scaler_.transform(X_all), y_all)  # one fold: coefficients of the train-only fit
        self.C_ = float(cv.C_)
        self.model_ = _linear(LogisticRegression, cv.coef_, cv.intercept_, cv.classes_, C=self.C_)
        self.classes_ = cv.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        return self.model_.predict_proba(self.scaler_.transform(flat(X)))

    def selected(self) -> dict:
        return {"C": self.C_}

    def state(self) -> dict:
        return {"mean": self.scaler_.mean_, "scale": self.scaler_.scale_, "coef": self.model_.coef_,
                "intercept": self.model_.intercept_, "classes": self.classes_, "C": np.float64(self.C_)}

    def restore(self, s: dict) -> "LogRegHead":
        self.scaler_ = _scaler(s["mean"], s["scale"])
        self.C_ = float(s["C"])
        self.model_ = _linear(LogisticRegression, s["coef"], s["intercept"], s["classes"], C=self.C_)
        self.classes_ = s["classes"]
        return self


class SVMHead(_SklearnHead):
    """Standardize, linear SVM (``C`` chosen by ``GridSearchCV``), probabilities by Platt scaling.

    Platt scaling: a logistic regression on the SVM's decision values of val (or, without val, on
    cross-validated decision values of train).
    """

    def __init__(self, Cs=(1e-4, 1e-3, 1e-2), class_weight=None, seed: int = 0):
        self.Cs, self.class_weight, self.seed = Cs, class_weight, seed

    def _svc(self, C: float) -> LinearSVC:
        return LinearSVC(C=C, class_weight=self.class_weight, random_state=self.seed, max_iter=5000)

    @one_blas_thread
    def fit(self, X, y, X_val=None, y_val=None, groups=None) -> "SVMHead":
        X, y = flat(X), _check_y(y)
        X_val = None if X_val is None else flat(X_val)
        self.scaler_ = StandardScaler().fit(X)
        X_all, y_all, folds = selection_data(X, y, X_val, y_val, groups, self.seed)
        search = GridSearchCV(self._svc(1.0), {"C": list(self.Cs)}, cv=folds, refit=False)
        search.fit(self.scaler_.transform(X_all), y_all)
        self.C_ = float(search.best_params_["C"])
        Xs = self.scaler_.transform(X)
        self.svc_ = self._svc(self.C_).fit(Xs, y)
        if X_val is None or len(X_val) == 0:
            y_cal = y
            decisions = cross_val_predict(self._svc(self.C_), Xs, y, cv=_kfold(y, groups, self.seed, 3),
                                          method="decision_function")
        else:  # held-out val decisions, as CalibratedClassifierCV does with a prefit model
            y_cal = y_val
            decisions = self.svc_.decision_function(self.scaler_.transform(X_val))
        self.calibrator_ = LogisticRegression(max_iter=1000).fit(decisions.reshape(len(y_cal), -1), y_cal)
        self.classes_ = self.svc_.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        decisions = self.svc_.decision_function(self.scaler_.transform(flat(X)))
        return self.calibrator_.predict_proba(decisions.reshape(len(decisions), -1))

    def selected(self) -> dict:
        return {"C": self.C_}

    def state(self) -> dict:
        return {"mean": self.scaler_.mean_, "scale": self.scaler_.scale_, "coef": self.svc_.coef_,
                "intercept": self.svc_.intercept_, "classes": self.classes_, "C": np.float64(self.C_),
                "cal_coef": self.calibrator_.coef_, "cal_intercept": self.calibrator_.intercept_}

    def restore(self, s: dict) -> "SVMHead":
        self.scaler_ = _scaler(s["mean"], s["scale"])
        self.C_ = float(s["C"])
        self.svc_ = _linear(LinearSVC, s["coef"], s["intercept"], s["classes"], C=self.C_)
        self.calibrator_ = _linear(LogisticRegression, s["cal_coef"], s["cal_intercept"], s["classes"])
        self.classes_ = s["classes"]
        return self


class KNNHead(_SklearnHead):
    """k nearest neighbours by cosine distance, ``k`` chosen by ``GridSearchCV``."""

    def __init__(self, ks=(1, 3, 5, 9, 15), weights: str = "distance", class_weight=None, seed: int = 0):
        self.ks, self.weights, self.class_weight, self.seed = ks, weights, class_weight, seed

    def _knn(self, k: int) -> KNeighborsClassifier:
        return KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute", weights=self.weights)

    @one_blas_thread
    def fit(self, X, y, X_val=None, y_val=None, groups=None) -> "KNNHead":
        if self.class_weight is not None:
            raise PipelineError("knn has no class weights; use --head logreg, svm or dense with --class-weight")
        X, y = flat(X), _check_y(y)
        X_val = None if X_val is None else flat(X_val)
        X_all, y_all, folds = selection_data(X, y, X_val, y_val, groups, self.seed)
        smallest = min(len(train) for train, _ in folds)
        ks = [k for k in self.ks if k <= smallest] or [1]
        search = GridSearchCV(self._knn(1), {"n_neighbors": ks}, cv=folds, refit=False).fit(X_all, y_all)
        return self.restore({"X": X, "y": y, "k": np.int64(search.best_params_["n_neighbors"])})

    def predict_proba(self, X) -> np.ndarray:
        return self.model_.predict_proba(flat(X))

    def selected(self) -> dict:
        return {"k": self.k_}

    def state(self) -> dict:
        return {"X": self.model_._fit_X, "y": self.model_._y, "k": np.int64(self.k_)}

    def restore(self, s: dict) -> "KNNHead":
        self.k_ = int(s["k"])
        self.model_ = self._knn(self.k_).fit(s["X"], s["y"])  # a k-NN's fit only stores its rows
        self.classes_ = self.model_.classes_
        return self


def parse_units(units) -> tuple[int, ...]:
    """``256`` / ``"4096,4096"`` / ``0`` -> hidden layer sizes (``()``: softmax straight on the features)."""
    if isinstance(units, str):
        try:
            units = [int(u) for u in units.split(",") if u.strip()]
        except ValueError:
            raise PipelineError(f"--units {units!r} is not a comma-separated list of integers, e.g. 256 or 4096,4096") from None
    units = [units] if isinstance(units, (int, np.integer)) else list(units)
    if any(u < 0 for u in units):
        raise PipelineError("--units must be 0 or more")
    return tuple(int(u) for u in units if u > 0)


def _require_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401  (Keras's TensorBoard callback needs it)
    except ImportError:
        raise PipelineError("--tensorboard needs the tensorboard package: pip install 'transfer-pipeline[tensorboard]'") from None


class DenseHead(ClassifierMixin, BaseEstimator):
    """Keras: Normalization, Flatten when the features are maps, ``Dense(units, relu)`` + ``Dropout`` per
    entry of ``units``, ``Dense(classes, softmax)``; early stopping on val with the best weights restored.

    Without val, a stratified fifth of train (by image) is held out for early stopping.
    """

    def __init__(self, units=(256,), dropout: float = 0.5, optimizer: str = "adam", lr: float = 1e-3,
                 epochs: int = 100, batch_size: int = 64, patience: int = 8, class_weight=None,
                 tensorboard: str | None = None, seed: int = 0):
        self.units, self.dropout, self.optimizer, self.lr = units, dropout, optimizer, lr
        self.epochs, self.batch_size, self.patience = epochs, batch_size, patience
        self.class_weight, self.tensorboard, self.seed = class_weight, tensorboard, seed

    def _build(self, X: np.ndarray, n_classes: int):
        import keras

        norm = keras.layers.Normalization(axis=-1, name="standardize")
        norm.adapt(X)
        layers = [keras.Input(X.shape[1:]), norm]
        layers += [keras.layers.Flatten()] if X.ndim > 2 else []
        for units in parse_units(self.units):
            layers += [keras.layers.Dense(units, activation="relu"), keras.layers.Dropout(self.dropout)]
        layers.append(keras.layers.Dense(n_classes, activation="softmax", name="probabilities"))
        model = keras.Sequential(layers, name="dense_head")
        try:
            optimizer = keras.optimizers.get({"class_name": self.optimizer, "config": {"learning_rate": self.lr}})
        except ValueError:
            raise PipelineError(f"--optimizer {self.optimizer!r} is not a Keras optimizer (try adam, rmsprop, sgd)") from None
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    def fit(self, X, y, X_val=None, y_val=None, groups=None) -> "DenseHead":
        import keras

        X, y = np.asarray(X, np.float32), _check_y(y)
        if X_val is None or len(X_val) == 0:
            train, held = _kfold(y, groups, self.seed, 5)[0]
            X, y, X_val, y_val = X[train], y[train], X[held], y[held]
        keras.utils.set_random_seed(self.seed)
        self.classes_ = np.unique(y)
        self.model_ = self._build(X, len(self.classes_))
        weights = _balanced(self.class_weight, y)
        callbacks = [keras.callbacks.EarlyStopping("val_loss", patience=self.patience, restore_best_weights=True)]
        if self.tensorboard:
            _require_tensorboard()
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(self.tensorboard)))
        history = self.model_.fit(X, y, validation_data=(np.asarray(X_val, np.float32), y_val), epochs=self.epochs,
                                  batch_size=self.batch_size, class_weight=weights, callbacks=callbacks, verbose=0)
        self.history_ = {k: [float(v) for v in vs] for k, vs in history.history.items()}
        self.best_epoch_ = int(np.argmin(self.history_["val_loss"])) + 1
        return self

    def predict_proba(self, X) -> np.ndarray:
        from keras import ops

        X = np.asarray(X, np.float32)
        chunks = [ops.convert_to_numpy(self.model_(X[i:i + 4096], training=False)) for i in range(0, len(X), 4096)]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.classes_)), np.float32)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def selected(self) -> dict:
        return {"epochs": self.best_epoch_}

    def save(self, directory: Path) -> Path:
        path = Path(directory) / "head.keras"
        self.model_.save(path)
        return path

    @classmethod
    def load(cls, directory: Path, params: dict) -> "DenseHead":
        import keras

        head = cls(**params)
        head.model_ = keras.saving.load_model(Path(directory) / "head.keras", safe_mode=True)
        head.classes_ = np.arange(head.model_.output_shape[-1])
        return head


HEADS = {"logreg": LogRegHead, "dense": DenseHead, "svm": SVMHead, "knn": KNNHead}
CLASS_WEIGHTS = (None, "balanced")


def head_class(name: str) -> type:
    if name not in HEADS:
        raise PipelineError(f"unknown head {name!r}; choose one of: {', '.join(HEADS)}")
    return HEADS[name]


def make_head(name: str, **options):
    """The head called ``name`` with ``options``; options another head takes are refused by name."""
    cls = head_class(name)
    known = cls().get_params()
    wrong = [k for k in options if k not in known]
    if wrong:
        flags = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise PipelineError(f"{flags} does not apply to --head {name} (it takes: {', '.join(sorted(known))})")
    if options.get("class_weight") not in CLASS_WEIGHTS:
        raise PipelineError(f"--class-weight {options['class_weight']!r} is not supported; use balanced")
    return cls(**options)

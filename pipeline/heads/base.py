"""The base of every head: scikit-learn's classifier API plus what a run directory needs (save and load,
the hyperparameters chosen, export as Keras layers)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from ..atomic import replacing
from ..errors import PipelineError
from ._fitting import predict_data
from ._options import Option, declared

if TYPE_CHECKING:
    from ..rows import Rows


class Head(ClassifierMixin, BaseEstimator):
    """A stage-two classifier on cached features, called ``name`` (the name of its module).

    A subclass takes its parameters in ``__init__`` (``random_state`` among them; those annotated with an
    :class:`~pipeline.heads._options.Option` are also command-line options), learns in
    ``fit(X, y, X_val=None, y_val=None, groups=None)`` (checking the data with ``_fitting.fit_data``, which
    sets ``n_features_in_``), sets ``classes_`` and implements ``_predict_proba`` on checked rows.
    Its fitted state is saved as plain arrays through ``state`` / ``restore``, unless it overrides
    ``_save`` and ``load``; it is exportable when it implements ``_export_layers``, and trains on rows that do
    not fit in memory when it implements ``fit_streaming`` (:mod:`pipeline.rows`). Every public method
    of a fitted head raises scikit-learn's ``NotFittedError`` on a head that is not fitted.
    """

    name: ClassVar[str]

    @classmethod
    def options(cls) -> tuple[Option, ...]:
        """The options this head declares for the command line (see :mod:`pipeline.heads._options`)."""
        return declared(cls)

    @classmethod
    def streams(cls) -> bool:
        """Whether this head trains without holding its rows in memory (it overrides ``fit_streaming``)."""
        return cls.fit_streaming is not Head.fit_streaming

    def fit_streaming(self, train: Rows, val: Rows | None = None) -> "Head":
        """Fit on feature-file rows without holding them in memory (heads that can override this)."""
        from . import head_class, names

        streaming = [n for n in names() if head_class(n).streams()]
        raise PipelineError(f"a {self.name} head holds its train rows in memory ({train.nbytes / 2**30:.1f} GiB "
                            f"here): train it with --no-stream, or use --head {' or '.join(streaming)}")

    def predict_rows(self, rows: Rows) -> np.ndarray:
        """Probabilities of every row of ``rows``, predicted chunk by chunk."""
        parts = [self.predict_proba(X) for X, _ in rows.chunks()]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.classes_)), np.float32)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, one row per sample, columns in the order of ``classes_``."""
        check_is_fitted(self)
        return self._predict_proba(predict_data(self, X))

    def _predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities of checked float32 rows ``X`` (feature maps arrive flattened)."""
        raise NotImplementedError

    def predict(self, X) -> np.ndarray:
        """The most probable class of each sample."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def selected(self) -> dict:
        """The hyperparameters chosen on val or by cross-validation (none by default)."""
        return {}

    def state(self) -> dict[str, np.ndarray]:
        """The fitted state as plain arrays, saved in ``head.npz``."""
        raise NotImplementedError

    def restore(self, state: dict[str, np.ndarray]) -> "Head":
        """Set the fitted state from the arrays of ``state()``; return ``self``."""
        raise NotImplementedError

    def save(self, directory: str | Path) -> Path:
        """Write the fitted head into ``directory``; return the file written."""
        check_is_fitted(self)
        return self._save(Path(directory))

    def _save(self, directory: Path) -> Path:
        path = directory / "head.npz"
        with replacing(path) as tmp:
            np.savez(tmp, **self.state())
        return path

    @classmethod
    def load(cls, directory: str | Path, params: dict) -> "Head":
        """The head that ``save`` wrote into ``directory``, with the ``params`` its run recorded."""
        with np.load(Path(directory) / "head.npz", allow_pickle=False) as f:
            return cls.from_params(params).restore({k: f[k] for k in f.files})

    @classmethod
    def from_params(cls, params: dict) -> "Head":
        """An unfitted head with a run's recorded ``params`` (older runs call ``random_state`` ``seed``)."""
        params = dict(params)
        if "seed" in params:
            params["random_state"] = params.pop("seed")
        return cls(**params)

    def export_layers(self, feature_shape) -> list:
        """Keras layers from the base's output (``feature_shape`` per image) to class probabilities."""
        check_is_fitted(self)
        return self._export_layers(tuple(feature_shape))

    def _export_layers(self, feature_shape: tuple) -> list:
        from . import head_class, names

        exportable = [n for n in names() if head_class(n)._export_layers is not Head._export_layers]
        choices = ", ".join(exportable[:-1]) + " or " + exportable[-1]
        raise PipelineError(f"a {self.name} head cannot be exported as Keras layers; train --head {choices} "
                            "and export that run (or use `transfer predict` with this one)")

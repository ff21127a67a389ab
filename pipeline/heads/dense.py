"""``dense``: a small Keras network, saved as ``head.keras`` and exported as that model."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable

import numpy as np

from ..atomic import replacing
from ..errors import PipelineError
from ._fitting import balanced, fit_data, kfold
from ._options import CLASS_WEIGHT, Option
from .base import Head

if TYPE_CHECKING:
    from ..rows import Rows


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


def by_index(class_weight: dict | None, classes: np.ndarray) -> dict | None:
    """Class weights keyed by label as Keras takes them, keyed by class index (1 for a class not named)."""
    return None if class_weight is None else {i: float(class_weight.get(c, 1.0)) for i, c in enumerate(classes.tolist())}


def _require_tensorboard() -> None:
    try:
        import tensorboard  # noqa: F401  (Keras's TensorBoard callback needs it)
    except ImportError:
        raise PipelineError("--tensorboard needs the tensorboard package: pip install 'transfer-pipeline[tensorboard]'") from None


def network_arrays(model) -> dict[str, np.ndarray]:
    """A dense head's Keras network as the arrays :mod:`pipeline.heads._numpy_predict` predicts with: the
    standardization (mean, and the divisor Keras uses: ``max(sqrt(variance), epsilon)``), each ``Dense``
    layer's kernel and bias, and the class indices."""
    import keras
    from keras import ops

    def array(value) -> np.ndarray:
        return ops.convert_to_numpy(value).astype(np.float32)

    norm = model.get_layer("standardize")
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    arrays = {"classes": np.arange(model.output_shape[-1]), "mean": array(norm.mean),
              "scale": np.maximum(np.sqrt(array(norm.variance)), np.float32(keras.backend.epsilon()))}
    for i, layer in enumerate(dense):
        arrays[f"kernel_{i}"], arrays[f"bias_{i}"] = array(layer.kernel), array(layer.bias)
    return arrays


VAL_BATCH = 4096  # rows per batch when a streamed val is evaluated
STEPS_PER_CALL = 32  # training steps per compiled call: a small network would otherwise spend its time in the loop
# a fit of at most this many training steps (epochs x batches) runs eagerly: tracing costs more than it saves
# (16 rows, 5 epochs: 0.3 s of CPU against 0.8 to 1.1 traced; 300 rows of 1,280, 12 epochs: 2.0 s against 1.1 to 1.4)
EAGER_STEPS = 50


def batches(rows: Rows, classes: np.ndarray, size: int, class_weight: dict, rng: np.random.Generator | None):
    """A ``tf.data`` pass over ``rows`` in ``ceil(len(rows) / size)`` batches (class indices as labels, and
    per-row weights given class weights), read chunk by chunk, shuffled anew each pass when ``rng`` is given."""
    import tensorflow as tf

    weight_of = np.array([class_weight.get(c, 1.0) for c in classes.tolist()], np.float32)

    def chunks():
        for X, y in rows.chunks(rng):
            y = np.searchsorted(classes, y)
            yield (X, y, weight_of[y]) if class_weight else (X, y)

    spec = (tf.TensorSpec((None, *rows.shape), tf.float32), tf.TensorSpec((None,), tf.int64))
    spec += (tf.TensorSpec((None,), tf.float32),) if class_weight else ()
    return (tf.data.Dataset.from_generator(chunks, output_signature=spec).rebatch(size)
            .apply(tf.data.experimental.assert_cardinality(-(-len(rows) // size))).prefetch(2))


SMALL_FIT_BYTES = 64 << 20  # train rows up to this size go through in_memory's pass, larger ones Keras's


def in_memory(X: np.ndarray, y: np.ndarray, size: int, weights: dict | None = None, seed: int | None = None):
    """Small in-memory rows as a ``tf.data`` pass of ``size``-row batches (class indices as labels, and per-row
    weights given class weights by index), shuffled anew each pass when ``seed`` is given.

    Keras starts a pass over arrays in 17 ms and this one in 1.5, and a fit starts two an epoch (train and val):
    300 rows x 1,280 for 100 epochs took 3.3 to 4.2 s of CPU against 10. At 12,800 rows (65 MB) both cost the
    same; above :data:`SMALL_FIT_BYTES` the shuffle buffer's copy of the rows is not worth it."""
    import tensorflow as tf

    columns = (X, y.astype(np.int64))
    if weights:
        columns += (np.array([weights.get(i, 1.0) for i in range(int(y.max()) + 1)], np.float32)[y],)
    rows = tf.data.Dataset.from_tensor_slices(columns)
    if seed is not None:
        rows = rows.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    return rows.batch(size)


class DenseHead(Head):
    """Keras: Normalization, Flatten when the features are maps, ``Dense(units, relu)`` + ``Dropout`` per
    entry of ``units``, ``Dense(classes, softmax)``; early stopping on val with the best weights restored.

    Without val, a stratified fifth of train (by image) is held out for early stopping.
    """

    name = "dense"

    def __init__(
            self,
            units: Annotated[tuple[int, ...], Option("hidden layer sizes, e.g. 256 or 4096,4096; 0 = softmax only",
                                                     type=str)] = (256,),
            dropout: Annotated[float, Option("dropout rate", low=0, high=1, high_open=True)] = 0.5,
            optimizer: Annotated[str, Option("a Keras optimizer name, e.g. adam, rmsprop")] = "adam",
            lr: Annotated[float, Option("learning rate")] = 1e-3,
            epochs: Annotated[int, Option("most epochs (early stopping on val)", low=1)] = 100,
            batch_size: Annotated[int, Option("batch size", low=1)] = 64,
            patience: Annotated[int, Option("epochs without val improvement", low=1)] = 8,
            class_weight: Annotated[str | None, CLASS_WEIGHT] = None,
            tensorboard: Annotated[str | None, Option("write TensorBoard logs here", folder=True)] = None,
            random_state: int = 0):
        self.units, self.dropout, self.optimizer, self.lr = units, dropout, optimizer, lr
        self.epochs, self.batch_size, self.patience = epochs, batch_size, patience
        self.class_weight, self.tensorboard, self.random_state = class_weight, tensorboard, random_state

    def _build(self, X: np.ndarray, n_classes: int, rows: int):
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
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                      steps_per_execution=STEPS_PER_CALL,
                      run_eagerly=self.epochs * math.ceil(rows / self.batch_size) <= EAGER_STEPS)
        return model

    def _check(self) -> None:
        if not (0 < self.lr < math.inf and 0 <= self.dropout < 1 and self.epochs >= 1 and self.batch_size >= 1):
            raise PipelineError(f"dense needs --lr above 0 (got {self.lr}), --dropout in [0, 1), --epochs and "
                                "--batch-size of 1 or more")

    def fit(self, X, y, X_val=None, y_val=None, groups=None) -> "DenseHead":
        shape = np.asarray(X).shape[1:]  # feature maps stay maps: the network flattens them itself
        X, y, X_val, y_val = fit_data(self, X, y, X_val, y_val)
        self.classes_, y = np.unique(y, return_inverse=True)  # the network learns class indices
        y_val = None if y_val is None else np.searchsorted(self.classes_, y_val)
        X, X_val = X.reshape(-1, *shape), None if X_val is None else X_val.reshape(-1, *shape)
        self._check()
        if X_val is None or len(X_val) == 0:
            train, held = kfold(y, groups, self.random_state, 5)[0]
            X, y, X_val, y_val = X[train], y[train], X[held], y[held]
        weights = by_index(balanced(self.class_weight, self.classes_[y]), self.classes_)

        def data() -> dict:
            if X.nbytes > SMALL_FIT_BYTES:  # Keras's own pass
                return dict(x=X, y=y, validation_data=(X_val, y_val), batch_size=self.batch_size, class_weight=weights)
            return dict(x=in_memory(X, y, self.batch_size, weights, self.random_state),
                        validation_data=in_memory(X_val, y_val, VAL_BATCH), shuffle=False)  # shuffled by in_memory

        return self._train(X, len(self.classes_), data, len(X))

    def fit_streaming(self, train: Rows, val: Rows | None = None) -> "DenseHead":
        """Batches read from the feature file in shuffled chunks, validated on val streamed the same way; the
        standardization adapted on a random sample of train."""
        from ._streaming import samples

        self._check()
        self.classes_ = np.unique(train.y)
        if val is None or len(val) == 0:
            kept, held = kfold(train.y, train.groups, self.random_state, 5)[0]
            train, val = train.subset(np.sort(kept)), train.subset(np.sort(held))
        sample = samples(train, None, self.random_state)[1]
        self.n_features_in_ = int(np.prod(train.shape))
        weights = balanced(self.class_weight, train.y) or {}
        shuffled = np.random.default_rng(self.random_state)
        return self._train(sample, len(self.classes_), rows=len(train), data=lambda: dict(
            x=batches(train, self.classes_, self.batch_size, weights, shuffled),
            validation_data=batches(val, self.classes_, VAL_BATCH, {}, None), shuffle=False))

    def _train(self, X_adapt: np.ndarray, n_classes: int, data: Callable[[], dict], rows: int) -> "DenseHead":
        """Build the network (standardization adapted on ``X_adapt``) and fit it on ``data()`` (``model.fit``'s
        arguments for ``rows`` training rows, made once the seed is set: a seeded ``tf.data`` shuffle also draws on
        TensorFlow's global seed) with early stopping on val."""
        import keras

        keras.utils.set_random_seed(self.random_state)
        self.model_ = self._build(X_adapt, n_classes, rows)
        callbacks = [keras.callbacks.EarlyStopping("val_loss", patience=self.patience, restore_best_weights=True)]
        if self.tensorboard:
            _require_tensorboard()
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(self.tensorboard)))
        history = self.model_.fit(**data(), epochs=self.epochs, callbacks=callbacks, verbose=0)
        self.history_ = {k: [float(v) for v in vs] for k, vs in history.history.items()}
        self.best_epoch_ = int(np.argmin(self.history_["val_loss"])) + 1
        return self

    def _predict_proba(self, X) -> np.ndarray:
        from keras import ops

        X = X.reshape(-1, *self.model_.input_shape[1:])
        chunks = [ops.convert_to_numpy(self.model_(X[i:i + 4096], training=False)) for i in range(0, len(X), 4096)]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.classes_)), np.float32)

    def selected(self) -> dict:
        return {"epochs": self.best_epoch_}

    def _save(self, directory: Path) -> Path:
        """``head.keras``, and the network's arrays in ``head.npz`` for predicting without Keras."""
        path = directory / "head.keras"
        with replacing(path) as tmp:
            self.model_.save(tmp)
        with replacing(directory / "head.npz") as tmp:
            np.savez(tmp, **{**network_arrays(self.model_), "classes": self.classes_})
        return path

    @classmethod
    def load(cls, directory: str | Path, params: dict) -> "DenseHead":
        import keras

        head = cls.from_params(params)
        head.model_ = keras.saving.load_model(Path(directory) / "head.keras", safe_mode=True)
        head.classes_ = np.arange(head.model_.output_shape[-1])  # older runs, whose labels are class indices
        if (Path(directory) / "head.npz").exists():
            with np.load(Path(directory) / "head.npz", allow_pickle=False) as f:
                head.classes_ = f["classes"]
        head.n_features_in_ = math.prod(head.model_.input_shape[1:])
        return head

    def _export_layers(self, feature_shape: tuple) -> list:
        return [self.model_]  # the model flattens maps itself

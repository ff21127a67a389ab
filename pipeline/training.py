"""Stage two: fit a head on cached features, evaluate it per split, write a run directory; compare heads.

Model selection uses val (or cross-validation on train when there is no val); test is only evaluated.
Heads train on every train row (augmented views included) and are evaluated on the images themselves.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from . import runs
from .config import IN_MEMORY_BYTES, fingerprint, utc_now
from .errors import PipelineError
from .heads import head_class, make_head, names
from .rows import Rows
from .store import FeatureFile


class Features:
    """A feature file opened for stage two: ``train`` (every row, augmented views included) and ``splits`` (the
    images themselves, per split) as :class:`~pipeline.rows.Rows`, which read features once when held, in
    chunks when streamed. Close it (or use ``with``) when done."""

    def __init__(self, cache: str | os.PathLike):
        self.cache = Path(cache)
        self._f = FeatureFile(cache)
        try:
            if "train" not in self._f.splits:
                raise PipelineError(f"{cache} has no train split; extract a folder with train/ (or class folders)")
            self.config, self.classes = self._f.config, self._f.classes
            self.train = Rows(self._f, "train")
            missing = [c for i, c in enumerate(self.classes) if i not in set(self.train.y.tolist())]
            if missing:
                raise PipelineError(f"{cache}: no train images of class {', '.join(missing)}; add some or remove the folder")
            self.splits = {split: Rows.originals(self._f, split) for split in self._f.splits}
            if self.splits["train"].index is None:
                self.splits["train"] = self.train  # no augmented views: one set of rows, read once
        except BaseException:
            self._f.close()
            raise

    def streams(self, stream: bool | None) -> bool:
        """Whether heads train streaming: ``stream``, or (None) when train's features exceed
        :data:`~pipeline.config.IN_MEMORY_BYTES`."""
        return self.train.nbytes > IN_MEMORY_BYTES if stream is None else bool(stream)

    def __enter__(self) -> "Features":
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()


def read_features(cache: str | os.PathLike) -> Features:
    """The feature file ``cache`` opened for stage two (see :class:`Features`)."""
    return Features(cache)


def evaluate(proba: np.ndarray, y: np.ndarray, classes: list[str]) -> dict:
    """``{accuracy, per_class, confusion_matrix, images}`` of predicted probabilities on one split."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    pred = np.argmax(np.asarray(proba), axis=1)
    labels = list(range(len(classes)))
    p, r, f1, n = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    per_class = {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f1[i]), "support": int(n[i])}
                 for i, c in enumerate(classes)}
    return {"accuracy": float(accuracy_score(y, pred)), "images": int(len(y)), "per_class": per_class,
            "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist()}


def fit(features: Features, head: str = "logreg", options: dict | None = None, seed: int = 0,
        run_dir: str | os.PathLike | None = None, runs_root: str | os.PathLike = "runs",
        stream: bool | None = None) -> dict:
    """Fit one head on opened ``features`` and write its run directory (see :func:`train`)."""
    options = dict(options or {})
    if {"seed", "random_state"} & set(options):
        raise PipelineError("pass the seed as seed=..., not among the head options")
    estimator = make_head(head, random_state=seed, **options)
    if run_dir is not None:
        runs.check_target(run_dir)  # before fitting, not after
    train, val = features.train, features.splits.get("val")
    streaming = features.streams(stream)
    start = time.perf_counter()
    if streaming:
        estimator.fit_streaming(train, val)
    else:
        estimator.fit(train.held(), train.y, *((val.held(), val.y) if val else (None, None)), groups=train.groups)
    fit_seconds = round(time.perf_counter() - start, 3)

    target = Path(run_dir) if run_dir else runs.new_run_dir(features.cache, head, runs_root)
    with runs.creating(target) as out:
        metrics = _write(out, estimator, features, head, seed, fit_seconds)
    return {"run_dir": str(target), "head": head, "selected": estimator.selected(), "fit_seconds": fit_seconds,
            "streamed": streaming, "metrics": metrics}


def _write(out: Path, estimator, features: Features, head: str, seed: int, fit_seconds: float) -> dict:
    """The fitted head, its metrics and predictions on every split, and its config, into ``out``; returns
    the metrics. A head whose probabilities are not numbers (a diverged fit) is refused."""
    estimator.save(out)
    metrics, predictions = {}, {}
    for split, rows in features.splits.items():
        proba, ys = estimator.predict_rows(rows), rows.y
        if not np.isfinite(proba).all():
            raise PipelineError(f"the {head} head diverged: its probabilities on {split} are not numbers "
                                "(lower --lr, or try another head)")
        metrics[split] = {**evaluate(proba, ys, features.classes), "fit_seconds": fit_seconds}
        predictions[split] = (rows.column("paths"), ys, proba)
    config = {
        "head": head, "params": estimator.get_params(), "selected": estimator.selected(), "seed": seed,
        "classes": features.classes, "cache": str(features.cache.resolve()), "fingerprint": fingerprint(features.config),
        "features": runs.feature_record(features.config), "feature_shape": list(features.train.shape),
        "rows": {"train": len(features.train), **{s: len(v) for s, v in features.splits.items() if s != "train"}},
        "created": utc_now(),
    }
    runs.write_run(out, config, metrics, predictions, features.classes, getattr(estimator, "history_", None))
    return metrics


def train(cache: str | os.PathLike, head: str = "logreg", options: dict | None = None, seed: int = 0,
          run_dir: str | os.PathLike | None = None, runs_root: str | os.PathLike = "runs",
          stream: bool | None = None) -> dict:
    """Fit ``head`` on a feature file, evaluate it on every split and write a run directory.

    Returns what ``transfer train --json`` prints: ``run_dir``, ``head``, ``selected`` (hyperparameters
    chosen on val or by cross-validation), ``fit_seconds``, ``streamed`` and ``metrics`` ({split: {accuracy,
    ...}}). ``stream``: train from chunked reads (True), from features held in memory (False), or the first
    when train's features exceed :data:`~pipeline.config.IN_MEMORY_BYTES` (None).

    Examples
    --------
    >>> r = train("cache/urban_rural/mobilenet_v2-160-avg.h5", "dense", {"units": "256", "dropout": 0.5})  # doctest: +SKIP
    >>> r["metrics"]["val"]["accuracy"]                                                                    # doctest: +SKIP
    1.0
    """
    with read_features(cache) as features:
        return fit(features, head, options, seed, run_dir, runs_root, stream)


def compare(cache: str | os.PathLike, heads=None, seed: int = 0, runs_root: str | os.PathLike = "runs",
            options: dict | None = None, stream: bool | None = None) -> list[dict]:
    """Fit ``heads`` (default: every head) on the same cached features (read once): one row per head with
    ``head``, ``val_accuracy``, ``test_accuracy`` (None when the split is absent), ``fit_seconds``, ``run_dir``.

    Each head gets the ``options`` it declares (``{"class_weight": "balanced"}`` weighs logreg, svm and
    dense, not knn); an option none of ``heads`` declares is refused. When heads train streaming (``stream``,
    as in :func:`train`), a head that cannot is not fitted: its row says why under ``skipped``."""
    if heads is None:
        heads = names()
    heads = [heads] if isinstance(heads, str) else list(heads)
    unknown = [h for h in heads if h not in names()]
    if unknown or not heads:
        raise PipelineError(f"unknown head {', '.join(unknown) or '(none given)'}; choose from: {', '.join(names())}")
    declared = {head: {o.name for o in head_class(head).options()} for head in heads}
    unused = [k for k in options or {} if not any(k in taken for taken in declared.values())]
    if unused:
        flags = ", ".join("--" + k.replace("_", "-") for k in unused)
        raise PipelineError(f"none of the heads compared ({', '.join(heads)}) takes {flags}")
    rows = []
    with read_features(cache) as features:
        for head in heads:
            if features.streams(stream) and not head_class(head).streams():
                rows.append({"head": head, "val_accuracy": None, "test_accuracy": None, "fit_seconds": None,
                             "run_dir": None, "skipped": f"{head} cannot train streaming (--no-stream holds the "
                                                         f"features in memory: {features.train.nbytes / 2**30:.1f} GiB)"})
                continue
            own = {k: v for k, v in (options or {}).items() if k in declared[head]}
            m = (result := fit(features, head, own, seed, runs_root=runs_root, stream=stream))["metrics"]
            rows.append({"head": head, "val_accuracy": m.get("val", {}).get("accuracy"),
                         "test_accuracy": m.get("test", {}).get("accuracy"), "fit_seconds": result["fit_seconds"],
                         "run_dir": result["run_dir"]})
    return rows


def evaluate_run(run_dir: str | os.PathLike, cache: str | os.PathLike) -> dict:
    """Metrics of a trained head on every split of a feature file; features of another config are refused."""
    run = runs.open_run(run_dir)
    with FeatureFile(cache) as f:
        run.check(f.config, f.classes, str(cache))
    head = run.head()
    with read_features(cache) as features:
        return {split: evaluate(head.predict_rows(rows), rows.y, run.classes) for split, rows in features.splits.items()}

"""Stage two: fit a head on cached features, evaluate it per split, write a run directory; compare heads.

Model selection uses val (or cross-validation on train when there is no val); test is only evaluated.
Heads train on every train row (augmented views included) and are evaluated on the images themselves.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import runs
from .config import fingerprint, utc_now
from .errors import PipelineError
from .heads import head_class, make_head, names
from .store import FeatureFile


@dataclass
class Features:
    """Everything stage two reads from a feature file, loaded once."""

    cache: Path
    config: dict
    classes: list[str]
    train: tuple[np.ndarray, np.ndarray, np.ndarray]  # X, y, groups (image hash) over all views
    splits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # X, y, paths of the images themselves


def read_features(cache: str | os.PathLike) -> Features:
    with FeatureFile(cache) as f:
        if "train" not in f.splits:
            raise PipelineError(f"{cache} has no train split; extract a folder with train/ (or class folders)")
        X, y = f.load("train")
        train = (X, y, f.column("train", "sha256"))
        missing = [c for i, c in enumerate(f.classes) if i not in set(y.tolist())]
        if missing:
            raise PipelineError(f"{cache}: no train images of class {', '.join(missing)}; add some or remove the folder")
        splits = {}
        for split in f.splits:
            Xs, ys = f.load(split, originals_only=True)
            paths = f.column(split, "paths")[f.column(split, "view") == 0]
            splits[split] = (Xs, ys, paths)
        return Features(Path(cache), f.config, f.classes, train, splits)


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
        run_dir: str | os.PathLike | None = None, runs_root: str | os.PathLike = "runs") -> dict:
    """Fit one head on already loaded ``features`` and write its run directory (see :func:`train`)."""
    options = dict(options or {})
    if {"seed", "random_state"} & set(options):
        raise PipelineError("pass the seed as seed=..., not among the head options")
    estimator = make_head(head, random_state=seed, **options)
    if run_dir is not None:
        runs.check_target(run_dir)  # before fitting, not after
    X, y, groups = features.train
    val = features.splits.get("val")
    start = time.perf_counter()
    estimator.fit(X, y, *(val[:2] if val else (None, None)), groups=groups)
    fit_seconds = round(time.perf_counter() - start, 3)

    target = Path(run_dir) if run_dir else runs.new_run_dir(features.cache, head, runs_root)
    with runs.creating(target) as out:
        metrics = _write(out, estimator, features, head, seed, fit_seconds)
    return {"run_dir": str(target), "head": head, "selected": estimator.selected(), "fit_seconds": fit_seconds,
            "metrics": metrics}


def _write(out: Path, estimator, features: Features, head: str, seed: int, fit_seconds: float) -> dict:
    """The fitted head, its metrics and predictions on every split, and its config, into ``out``; returns
    the metrics. A head whose probabilities are not numbers (a diverged fit) is refused."""
    X, y = features.train[:2]
    estimator.save(out)
    metrics, predictions = {}, {}
    for split, (Xs, ys, paths) in features.splits.items():
        proba = estimator.predict_proba(Xs)
        if not np.isfinite(proba).all():
            raise PipelineError(f"the {head} head diverged: its probabilities on {split} are not numbers "
                                "(lower --lr, or try another head)")
        metrics[split] = {**evaluate(proba, ys, features.classes), "fit_seconds": fit_seconds}
        predictions[split] = (paths, ys, proba)
    config = {
        "head": head, "params": estimator.get_params(), "selected": estimator.selected(), "seed": seed,
        "classes": features.classes, "cache": str(features.cache.resolve()), "fingerprint": fingerprint(features.config),
        "features": runs.feature_record(features.config), "feature_shape": list(X.shape[1:]),
        "rows": {"train": int(len(y)), **{s: int(len(v[1])) for s, v in features.splits.items() if s != "train"}},
        "created": utc_now(),
    }
    runs.write_run(out, config, metrics, predictions, features.classes, getattr(estimator, "history_", None))
    return metrics


def train(cache: str | os.PathLike, head: str = "logreg", options: dict | None = None, seed: int = 0,
          run_dir: str | os.PathLike | None = None, runs_root: str | os.PathLike = "runs") -> dict:
    """Fit ``head`` on a feature file, evaluate it on every split and write a run directory.

    Returns what ``transfer train --json`` prints: ``run_dir``, ``head``, ``selected`` (hyperparameters
    chosen on val or by cross-validation), ``fit_seconds`` and ``metrics`` ({split: {accuracy, ...}}).

    Examples
    --------
    >>> r = train("cache/urban_rural/mobilenet_v2-160-avg.h5", "dense", {"units": "256", "dropout": 0.5})  # doctest: +SKIP
    >>> r["metrics"]["val"]["accuracy"]                                                                    # doctest: +SKIP
    1.0
    """
    return fit(read_features(cache), head, options, seed, run_dir, runs_root)


def compare(cache: str | os.PathLike, heads=None, seed: int = 0, runs_root: str | os.PathLike = "runs",
            options: dict | None = None) -> list[dict]:
    """Fit ``heads`` (default: every head) on the same cached features (read once): one row per head with
    ``head``, ``val_accuracy``, ``test_accuracy`` (None when the split is absent), ``fit_seconds``, ``run_dir``.

    Each head gets the ``options`` it declares (``{"class_weight": "balanced"}`` weighs logreg, svm and
    dense, not knn); an option none of ``heads`` declares is refused."""
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
    features = read_features(cache)
    rows = []
    for head in heads:
        own = {k: v for k, v in (options or {}).items() if k in declared[head]}
        result = fit(features, head, own, seed=seed, runs_root=runs_root)
        m = result["metrics"]
        rows.append({"head": head, "val_accuracy": m.get("val", {}).get("accuracy"),
                     "test_accuracy": m.get("test", {}).get("accuracy"), "fit_seconds": result["fit_seconds"],
                     "run_dir": result["run_dir"]})
    return rows


def evaluate_run(run_dir: str | os.PathLike, cache: str | os.PathLike) -> dict:
    """Metrics of a trained head on every split of a feature file; features of another config are refused."""
    run = runs.open_run(run_dir)
    with FeatureFile(cache) as f:
        run.check(f.config, f.classes, str(cache))
    features = read_features(cache)
    head = run.head()
    return {split: evaluate(head.predict_proba(X), y, run.classes) for split, (X, y, _) in features.splits.items()}

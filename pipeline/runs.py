"""Run directories: one fitted head with its config, metrics, predictions and figures.

::

    runs/<dataset>-<cache-stem>-<head>-<YYYYmmdd-HHMMSS>/
        config.json            head, options, chosen hyperparameters, seed, classes, the cache file and
                               its config + fingerprint (features from another config are refused)
        metrics.json           per split: accuracy, per-class precision/recall/F1, confusion matrix, fit seconds
        head.npz | head.keras  the fitted head (plain arrays, or Keras loaded with safe_mode)
        predictions-<split>.csv
        confusion.png          (and curves.png for dense)
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import plots
from .atomic import umask, write_text, writing
from .config import POOLINGS, PRECISIONS, PREPROCESSINGS, RUN_KEYS, STORE_DTYPES, differences, fingerprint
from .datasets import path_problem
from .errors import PipelineError
from .heads import _numpy_predict, head_class

NAME_BYTES = 200  # a run directory's name stays well under the file system's 255 bytes


def new_run_dir(cache: str | os.PathLike, head: str, root: str | os.PathLike = "runs") -> Path:
    """``root/<dataset>-<cache-stem>-<head>-<time>/``, created empty; never an existing folder. A name too
    long for the file system keeps its end (head and time) and a hash of the whole."""
    cache = Path(cache)
    name = f"{cache.parent.name}-{cache.stem}-{head}-{time.strftime('%Y%m%d-%H%M%S')}"
    if len(name.encode()) > NAME_BYTES:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        tail = name.encode()[-(NAME_BYTES - 9):].decode("utf-8", "ignore")
        name = f"{digest}-{tail}"
    base = Path(root) / name
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def check_target(run_dir: str | os.PathLike) -> Path:
    """``run_dir`` as a path, refused when it holds a run (or anything else): runs are never overwritten."""
    target = Path(run_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        what = "already holds a run" if (target / "config.json").exists() else "is not an empty folder"
        raise PipelineError(f"--run-dir {target} {what}; pass a new folder (or omit --run-dir for a fresh one)")
    return target


@contextmanager
def creating(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden folder to write a run into; it becomes ``run_dir`` only once complete, so a run
    directory is whole or absent. An existing run (or any non-empty folder) is refused, never overwritten."""
    target = check_target(run_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))  # unpredictable, ours alone
    try:
        os.chmod(tmp, 0o777 & ~umask())
        yield tmp
        os.replace(tmp, target)  # an empty target folder is replaced whole
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, default=str, allow_nan=False) + "\n")


def read_json(path: Path) -> dict:
    """A JSON object from a file of a run directory, or a one-line :class:`PipelineError` naming the file."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{path} is missing; the run directory is incomplete (train again)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PipelineError(f"{path} is not readable JSON ({type(exc).__name__}); the run directory is damaged "
                            "(train again)") from None
    if not isinstance(obj, dict):
        raise PipelineError(f"{path} does not hold a JSON object; the run directory is damaged (train again)")
    return obj


def write_run(out: Path, config: dict, metrics: dict, predictions: dict[str, tuple], classes: list[str],
              history: dict | None = None) -> None:
    """Write a run directory's records beside its head: ``config.json``, ``metrics.json``,
    ``predictions-<split>.csv`` (``predictions``: {split: (paths, true labels, probabilities)}),
    ``confusion.png`` and, given a training ``history``, ``curves.png``."""
    for split, (paths, y_true, proba) in predictions.items():
        write_predictions(out / f"predictions-{split}.csv", paths, y_true, proba, classes)
    write_json(out / "config.json", config)
    write_json(out / "metrics.json", metrics)
    plots.confusion_png(out / "confusion.png", {s: m["confusion_matrix"] for s, m in metrics.items()}, classes)
    if history:
        plots.curves_png(out / "curves.png", history)


def write_predictions(path: Path, paths, y_true, proba: np.ndarray, classes: list[str]) -> None:
    """``path,true,predicted,p_<class>...`` one row per image."""
    with writing(path, newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["path", "true", "predicted", *(f"p_{c}" for c in classes)])
        for p, t, row in zip(paths, y_true, proba):
            out.writerow([p, classes[int(t)], classes[int(np.argmax(row))], *(f"{v:.6f}" for v in row)])


@dataclass
class Run:
    """A run directory read back: its config and (on demand) its fitted head."""

    dir: Path
    config: dict

    @property
    def classes(self) -> list[str]:
        return self.config["classes"]

    @property
    def features(self) -> dict:
        """The feature config the head was trained on (backbone, weights, size, pooling, ...).

        A weights file recorded relative to the run (a fine-tuned base) resolves against the run directory,
        so a run directory can be moved or copied whole."""
        features = dict(self.config["features"])
        weights = str(features.get("weights") or "")
        if weights not in ("", "imagenet", "none") and not Path(weights).is_absolute():
            features["weights"] = str((self.dir / weights).resolve())
        return features

    def head(self):
        """The fitted head, checked against the recorded classes and feature shape."""
        self._check_width()
        head = self._loading(lambda: head_class(self.config["head"]).load(self.dir, self.config["params"]))
        self._check_classes(len(getattr(head, "classes_", ())))
        shape = getattr(getattr(head, "model_", None), "input_shape", None)  # a Keras head's (head.keras)
        if shape is not None:
            self._check_width({int(np.prod(shape[1:]))})
        return head

    def predict_proba(self) -> Callable[[np.ndarray], np.ndarray]:
        """The fitted head's ``predict_proba``, checked against the recorded classes. Linear heads compute it
        from their saved arrays with numpy (:mod:`pipeline.heads._numpy_predict`): predicting imports no scikit-learn."""
        self._check_width()
        loaded = self._loading(lambda: _numpy_predict.load(self.config["head"], self.dir))
        if loaded is None:
            return self.head().predict_proba
        self._check_classes(loaded[1])
        return loaded[0]

    def _loading(self, load: Callable):
        """``load()``, with a damaged head file reported in one line."""
        try:
            return load()
        except PipelineError:
            raise
        except Exception as exc:  # a damaged head file can fail inside numpy, scikit-learn or Keras
            raise PipelineError(f"{self.dir}: cannot load the fitted {self.config['head']} head "
                                f"({type(exc).__name__}: {exc}); train again") from None

    def _check_width(self, widths: set[int] | None = None) -> None:
        """Refuse a head that takes another number of features per image than the recorded shape: ``widths``,
        by default those its arrays take."""
        expected = int(np.prod(self.config["feature_shape"]))
        if widths is None:
            widths = self._loading(lambda: _numpy_predict.input_widths(self.dir))
        widths = widths - {expected}
        if widths:
            raise PipelineError(f"{self.dir}: the fitted head takes {min(widths)} features per image, config.json "
                                f"records feature_shape {self.config['feature_shape']} ({expected}); the run "
                                "directory is damaged (train again)")

    def _check_classes(self, count: int) -> None:
        if count != len(self.classes):
            raise PipelineError(f"{self.dir}: the fitted head has {count} classes, config.json lists "
                                f"{len(self.classes)}; the run directory is damaged (train again)")

    def metrics(self) -> dict:
        """``metrics.json``, checked: {split: {accuracy in [0, 1], fit_seconds >= 0, ...}}."""
        path = self.dir / "metrics.json"
        metrics = read_json(path)
        for split, m in metrics.items():
            ok = split in ("train", "val", "test") and isinstance(m, dict) \
                and _number(m.get("accuracy"), 0, 1) and _number(m.get("fit_seconds", 0), 0, math.inf)
            if not ok:
                raise PipelineError(f"{path}: split {split!r} is not a split with an accuracy in [0, 1] and "
                                    "fit seconds; the run directory is damaged (train again)")
        return metrics

    def predictions(self, split: str) -> list[dict]:
        """Rows of ``predictions-<split>.csv`` (``[]`` when absent), checked: known classes, probabilities in
        [0, 1], paths inside the dataset root."""
        path = self.dir / f"predictions-{split}.csv"
        if not path.is_file():
            return []
        expected = ["path", "true", "predicted", *(f"p_{c}" for c in self.classes)]
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                reader = csv.reader(fh)
                if next(reader, None) != expected:
                    raise PipelineError(f"{path}: the header is not {','.join(expected)}")
                rows = []
                for n, row in enumerate(reader, 2):
                    problem = _prediction_problem(row, self.classes)
                    if problem:
                        raise PipelineError(f"{path}, line {n}: {problem}; the run directory is damaged")
                    rows.append({"path": row[0], "true": row[1], "predicted": row[2],
                                 "probabilities": dict(zip(self.classes, map(float, row[3:])))})
                return rows
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise PipelineError(f"{path} is not a readable CSV ({type(exc).__name__})") from None

    def check(self, config: dict, classes: list[str], source: str) -> None:
        """Refuse features (described by their file's ``config``) that differ from the ones trained on."""
        if fingerprint(config) != self.config["fingerprint"]:
            diff = differences(config, self.features)
            raise PipelineError(f"{source} holds features unlike the ones {self.dir} was trained on "
                                f"({'; '.join(diff) or 'another config'}); extract with the run's settings or train a new head")
        if list(classes) != self.classes:
            raise PipelineError(f"{source} has classes {list(classes)}, but {self.dir} was trained on {self.classes}")


def _number(value, low: float, high: float) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


def _prediction_problem(row: list[str], classes: list[str]) -> str:
    if len(row) != 3 + len(classes):
        return f"{len(row)} fields where {3 + len(classes)} are expected"
    if path_problem(row[0]):
        return path_problem(row[0])
    if row[1] not in classes or row[2] not in classes:
        return "a class that is not one of the run's"
    try:
        if not all(0.0 <= float(v) <= 1.0 for v in row[3:]):
            return "a probability outside [0, 1]"
    except ValueError:
        return "a probability that is not a number"
    return ""


def config_problem(config: dict) -> str:
    """What makes a run's ``config.json`` unusable ('' when nothing does)."""
    classes, features, shape = config.get("classes"), config.get("features"), config.get("feature_shape")
    if not isinstance(config.get("head"), str) or not isinstance(config.get("params"), dict):
        return "head or params is missing or of the wrong type"
    if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)
            and len(set(classes)) == len(classes)):
        return "classes is not a list of two or more distinct names"
    if not (isinstance(shape, list) and shape and all(_number(d, 1, 1 << 20) and d == int(d) for d in shape)):
        return "feature_shape is not a list of positive sizes"
    if not isinstance(features, dict) or not all(isinstance(features.get(k), str)
                                                 for k in ("backbone", "weights", "weights_sha256")):
        return "features does not name a backbone, weights and their sha256"
    size = features.get("input_size")
    if not (_number(size, 8, 4096) and size == int(size)):
        return f"features.input_size {size!r} is not an image size in pixels"
    for key, allowed in (("pooling", POOLINGS), ("preprocess", PREPROCESSINGS), ("precision", (*PRECISIONS, None)),
                         ("store_dtype", (*STORE_DTYPES, None))):
        if features.get(key) not in allowed:
            return f"features.{key} {features.get(key)!r} is not one of {', '.join(map(str, allowed))}"
    if not isinstance(config.get("fingerprint"), str) or not isinstance(config.get("cache"), str):
        return "fingerprint or cache is missing"
    return ""


def open_run(run_dir: str | os.PathLike) -> Run:
    """A run directory read back, its ``config.json`` validated before anything trusts it."""
    path = Path(run_dir)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise PipelineError(f"{path} is not a run directory (no config.json); make one with `transfer train`")
    config = read_json(config_path)
    problem = config_problem(config)
    if problem:
        raise PipelineError(f"{config_path}: {problem}; the run directory is damaged or not made by this tool "
                            "(train again)")
    return Run(path, config)


def feature_record(config: dict) -> dict:
    """The part of a feature file's config that a run records."""
    return {k: config.get(k) for k in RUN_KEYS}

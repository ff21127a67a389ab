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
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import plots
from .config import RUN_KEYS, differences, fingerprint
from .errors import PipelineError
from .heads import head_class


def new_run_dir(cache: str | os.PathLike, head: str, root: str | os.PathLike = "runs") -> Path:
    """``root/<dataset>-<cache-stem>-<head>-<time>/``, created; never an existing folder."""
    cache = Path(cache)
    base = Path(root) / f"{cache.parent.name}-{cache.stem}-{head}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str) + "\n")


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
    with open(path, "w", newline="") as fh:
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
        return head_class(self.config["head"]).load(self.dir, self.config["params"])

    def check(self, config: dict, classes: list[str], source: str) -> None:
        """Refuse features (described by their file's ``config``) that differ from the ones trained on."""
        if fingerprint(config) != self.config["fingerprint"]:
            diff = differences(config, self.features)
            raise PipelineError(f"{source} holds features unlike the ones {self.dir} was trained on "
                                f"({'; '.join(diff) or 'another config'}); extract with the run's settings or train a new head")
        if list(classes) != self.classes:
            raise PipelineError(f"{source} has classes {list(classes)}, but {self.dir} was trained on {self.classes}")


def open_run(run_dir: str | os.PathLike) -> Run:
    path = Path(run_dir)
    config_path = path / "config.json"
    if not config_path.is_file():
        raise PipelineError(f"{path} is not a run directory (no config.json); make one with `transfer train`")
    return Run(path, json.loads(config_path.read_text()))


def feature_record(config: dict) -> dict:
    """The part of a feature file's config that a run records."""
    return {k: config.get(k) for k in RUN_KEYS}

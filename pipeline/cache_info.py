"""Describe a feature file for people and scripts (``transfer info``)."""

from __future__ import annotations

import os

import numpy as np

from .store import FeatureFile


def describe(path: str | os.PathLike) -> dict:
    """Config, classes, per-split rows/shape/class counts, and the recorded errors of a feature file."""
    with FeatureFile(path) as f:
        classes = f.classes
        splits = {}
        for split in f.splits:
            labels = f.column(split, "labels")
            counts = np.bincount(labels, minlength=len(classes)) if len(labels) else np.zeros(len(classes), int)
            feats = f.features(split)
            splits[split] = {
                "rows": int(len(labels)),
                "images": int((f.column(split, "view") == 0).sum()),
                "shape": list(feats.shape),
                "dtype": str(feats.dtype),
                "per_class": {c: int(n) for c, n in zip(classes, counts)},
            }
        return {"path": str(path), "config": f.config, "classes": classes, "splits": splits,
                "errors": [{"path": e["path"], "reason": e["reason"]} for e in f.errors()]}

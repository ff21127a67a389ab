"""Reading a published feature file: validated on open, never blocking, never half-written."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from ..errors import PipelineError
from .layout import Key, layout_problem


class FeatureFile:
    """Read-only view of a published feature file (never blocks, never sees a half-written file)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise PipelineError(f"feature file not found: {self.path} (run `transfer extract` first)")
        try:
            self._f = h5py.File(self.path, "r", locking=False)
        except OSError:
            raise PipelineError(f"{self.path} is not an HDF5 feature file (make one with `transfer extract`)") from None
        problem = layout_problem(self._f)
        if problem:
            self._f.close()
            raise PipelineError(f"{self.path} is not a usable feature file: {problem} "
                                "(delete it and rerun `transfer extract`)")

    def __enter__(self) -> "FeatureFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    @property
    def config(self) -> dict:
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in self._f.attrs.items()}

    @property
    def classes(self) -> list[str]:
        return list(self._f["classes"].asstr()[()])

    @property
    def splits(self) -> list[str]:
        return [s for s in ("train", "val", "test") if s in self._f]

    def column(self, split: str, name: str) -> np.ndarray:
        ds = self._f[split][name]
        return ds.asstr()[()] if ds.dtype.kind in "OS" else ds[()]

    def features(self, split: str) -> h5py.Dataset:
        return self._f[split]["features"]

    def errors(self) -> list[dict]:
        if "errors" not in self._f:
            return []
        g = self._f["errors"]
        return [{"path": p, "sha256": s, "reason": r}
                for p, s, r in zip(g["path"].asstr()[()], g["sha256"].asstr()[()], g["reason"].asstr()[()])]

    def finite(self, split: str, X: np.ndarray) -> np.ndarray:
        """``X`` (rows of ``split``'s features) after refusing NaN or infinite values."""
        if not np.isfinite(X).all():
            raise PipelineError(f"{self.path}: /{split}/features holds NaN or infinite values; "
                                "delete the file and rerun `transfer extract`")
        return X

    def load(self, split: str, originals_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)`` for one split, features as float32."""
        if split not in self._f:
            raise PipelineError(f"{self.path} has no {split} split (it has: {', '.join(self.splits) or 'none'})")
        X = self.finite(split, self.features(split)[()].astype(np.float32, copy=False))
        y = self.column(split, "labels")
        if originals_only:
            keep = self.column(split, "view") == 0
            X, y = X[keep], y[keep]
        return X, y

    def index(self) -> dict[Key, tuple[str, int]]:
        """Every stored (sha256, view) and one place it lives."""
        where: dict[Key, tuple[str, int]] = {}
        for split in self.splits:
            for i, (sha, view) in enumerate(zip(self.column(split, "sha256"), self.column(split, "view"))):
                where.setdefault((sha, int(view)), (split, i))
        return where


def load(path: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(X, y, class_names)`` for one split of a feature file.

    Examples
    --------
    >>> X, y, classes = load("cache/flowers/mobilenet_v2-160-avg.h5", "train")   # doctest: +SKIP
    """
    with FeatureFile(path) as f:
        X, y = f.load(split)
        return X, y, f.classes

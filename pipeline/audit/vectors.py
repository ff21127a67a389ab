"""The cached rows as one feature vector each: raw maps average-pooled, read in blocks of rows.

Every finding of the audit starts here: duplicates compare the images themselves (view 0), label issues
also train on the augmented views, outliers look at the images again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..datasets import Entry
from ..store import FeatureFile

POOL_ROWS = 256


@dataclass
class Rows:
    """Rows of a feature file: the image each belongs to, its view, its class index, its pooled vector."""

    images: list[Entry]
    views: np.ndarray
    labels: np.ndarray
    vectors: np.ndarray

    def originals(self) -> "Rows":
        """Only the images themselves (view 0)."""
        return self._where(self.views == 0)

    def in_splits(self, splits: tuple[str, ...]) -> "Rows":
        return self._where(np.array([e.split in splits for e in self.images], dtype=bool))

    def _where(self, keep: np.ndarray) -> "Rows":
        """The kept rows; these same rows (no copy of the vectors) when every row is kept."""
        if keep.all():
            return self
        return Rows([e for e, k in zip(self.images, keep) if k], self.views[keep], self.labels[keep], self.vectors[keep])


def _pooled(f: FeatureFile, split: str, keep: np.ndarray) -> np.ndarray:
    """Feature vectors of the kept rows, maps average-pooled, read in blocks of rows."""
    ds = f.features(split)
    blocks = []
    for start in range(0, ds.shape[0], POOL_ROWS):
        block = f.finite(split, ds[start:start + POOL_ROWS].astype(np.float32)[keep[start:start + POOL_ROWS]])
        blocks.append(block.reshape(len(block), -1, block.shape[-1]).mean(axis=1) if block.ndim > 2 else block)
    return np.concatenate(blocks) if blocks else np.zeros((0, ds.shape[-1] if ds.ndim > 1 else 0), np.float32)


def read_rows(f: FeatureFile, augmented: bool = False) -> Rows:
    """Every split's images (and with ``augmented`` their augmented views) with pooled feature vectors.

    Examples
    --------
    >>> with FeatureFile("cache/urban_rural/mobilenet_v2-224-avg.h5") as f:   # doctest: +SKIP
    ...     rows = read_rows(f)
    >>> rows.vectors.shape                                                   # doctest: +SKIP
    (92, 1280)
    """
    classes = f.classes
    images: list[Entry] = []
    views, labels, vectors = [], [], []
    for split in f.splits:
        view = f.column(split, "view")
        keep = np.ones(len(view), bool) if augmented else view == 0
        y, paths, shas = (f.column(split, c)[keep] for c in ("labels", "paths", "sha256"))
        images += [Entry(split, classes[int(c)], p, s) for c, p, s in zip(y, paths, shas)]
        views.append(view[keep])
        labels.append(y)
        vectors.append(_pooled(f, split, keep))
    vectors = [v for v in vectors if len(v)]
    return Rows(images, np.concatenate(views or [np.zeros(0, int)]).astype(int),
                np.concatenate(labels or [np.zeros(0, int)]).astype(int),
                np.concatenate(vectors) if vectors else np.zeros((0, 1), np.float32))

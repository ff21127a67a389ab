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
        """The kept rows; their vectors a view of these (no copy) when the kept rows are consecutive, as one
        split's or consecutive splits' are."""
        if keep.all():
            return self
        at = np.flatnonzero(keep)
        kept = slice(at[0], at[-1] + 1) if len(at) and at[-1] - at[0] + 1 == len(at) else keep
        return Rows([e for e, k in zip(self.images, keep) if k], self.views[kept], self.labels[kept],
                    self.vectors[kept])


def _pool_into(out: np.ndarray, f: FeatureFile, split: str, keep: np.ndarray) -> None:
    """Write the kept rows' feature vectors (maps average-pooled) into ``out``, read in blocks of rows."""
    ds = f.features(split)
    at = 0
    for start in range(0, ds.shape[0], POOL_ROWS):
        wanted = keep[start:start + POOL_ROWS]
        if not wanted.any():
            continue
        block = f.finite(split, ds[start:start + POOL_ROWS].astype(np.float32)[wanted])
        out[at:at + len(block)] = block.reshape(len(block), -1, block.shape[-1]).mean(axis=1)
        at += len(block)


def read_index(f: FeatureFile, augmented: bool = False) -> Rows:
    """What :func:`read_rows` returns without reading a feature: vectors of width 0."""
    images, views, labels, _ = _index(f, augmented)
    return Rows(images, views, labels, np.zeros((len(images), 0), np.float32))


def read_rows(f: FeatureFile, augmented: bool = False, only: np.ndarray | None = None) -> Rows:
    """Every split's images (and with ``augmented`` their augmented views) with pooled feature vectors, held in
    one float32 array (no other copy is made on the way); ``only``: sorted positions among those rows, the rows
    read (a sample).

    Examples
    --------
    >>> with FeatureFile("cache/urban_rural/mobilenet_v2-224-avg.h5") as f:   # doctest: +SKIP
    ...     rows = read_rows(f)
    >>> rows.vectors.shape                                                   # doctest: +SKIP
    (92, 1280)
    """
    images, views, labels, keeps = _index(f, augmented)
    chosen = np.ones(len(images), bool)
    if only is not None:
        chosen[:] = False
        chosen[only] = True
        images = [images[i] for i in only]
    dims = next((f.features(s).shape[-1] for s in f.splits if f.features(s).ndim > 1), 1)
    vectors = np.empty((int(chosen.sum()), dims), np.float32)
    first = written = 0  # this split's first row among all rows, and among the vectors
    for split, keep in zip(f.splits, keeps):
        read = keep.copy()
        read[keep] = chosen[first:first + int(keep.sum())]
        _pool_into(vectors[written:], f, split, read)
        first, written = first + int(keep.sum()), written + int(read.sum())
    return Rows(images, views[chosen], labels[chosen], vectors)


def _index(f: FeatureFile, augmented: bool) -> tuple[list[Entry], np.ndarray, np.ndarray, list[np.ndarray]]:
    """Every split's kept rows (all, or view 0): their images, views and labels, and each split's kept mask."""
    classes = f.classes
    images: list[Entry] = []
    views, labels, keeps = [], [], []
    for split in f.splits:
        view = f.column(split, "view")
        keep = np.ones(len(view), bool) if augmented else view == 0
        y, paths, shas = (f.column(split, c)[keep] for c in ("labels", "paths", "sha256"))
        images += [Entry(split, classes[int(c)], p, s) for c, p, s in zip(y, paths, shas)]
        views.append(view[keep])
        labels.append(y)
        keeps.append(keep)
    return (images, np.concatenate(views or [np.zeros(0, int)]).astype(int),
            np.concatenate(labels or [np.zeros(0, int)]).astype(int), keeps)

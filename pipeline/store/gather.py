"""Reading rows that live in several segments as one array, like an ``h5py.Dataset`` of the split's features."""

from __future__ import annotations

import numpy as np

from .segments import Segment

SPAN_ROWS = 512  # rows read per slice of a segment; a wanted row more than this far from the last starts a new one


class SegmentedFeatures:
    """One split's features in a segmented file: row ``i`` is row ``row[i]`` of ``segments[segment[i]]``.

    Indexing reads like an ``h5py.Dataset`` (``x[()]``, ``x[a:b]``, ``x[i]``, ``x[[i, j]]``, ``x[mask]``) and
    returns a NumPy array; each segment is read in contiguous slices, never row by row.
    """

    def __init__(self, segments: list[Segment], segment: np.ndarray, row: np.ndarray, shape: tuple, dtype):
        self.segments, self.segment, self.row = segments, segment, row
        self.shape = (len(segment), *shape)
        self.dtype = np.dtype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple) and key:
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            return self._rows(np.arange(len(self))[[key]])[0][rest]
        if key is Ellipsis or isinstance(key, tuple):  # x[()] or x[...]
            index = np.arange(len(self))
        elif isinstance(key, slice):
            index = np.arange(*key.indices(len(self)))
        else:
            key = np.asarray(key)
            index = np.flatnonzero(key) if key.dtype == bool else np.arange(len(self))[key]
        out = self._rows(index)
        return out[(Ellipsis if key is Ellipsis else slice(None), *rest)] if rest else out

    def _rows(self, index: np.ndarray) -> np.ndarray:
        out = np.empty((len(index), *self.shape[1:]), self.dtype)
        seg, row = self.segment[index], self.row[index]
        for s in np.unique(seg):
            where = np.flatnonzero(seg == s)
            order = np.argsort(row[where], kind="stable")
            out[where[order]] = read_rows(self.segments[s].features, row[where][order])
        return out


def read_rows(dataset, rows: np.ndarray) -> np.ndarray:
    """``dataset[rows]`` for sorted ``rows`` (repeats allowed), read as one slice per run of rows that lie within
    :data:`SPAN_ROWS` of its first: few reads, and never more than that many rows read past those wanted."""
    out = np.empty((len(rows), *dataset.shape[1:]), dataset.dtype)
    start = 0
    while start < len(rows):
        stop = int(np.searchsorted(rows, rows[start] + SPAN_ROWS))
        lo = rows[start]
        out[start:stop] = dataset[lo:rows[stop - 1] + 1][rows[start:stop] - lo]
        start = stop
    return out

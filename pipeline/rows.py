"""One split of a feature file as stage two reads it: held in memory once, or read in chunks.

A head trains on :class:`Rows`. When train's features fit in :data:`~pipeline.config.IN_MEMORY_BYTES` (float32) they are read
once and held (``compare`` shares them between heads); above it, heads that can train streaming read chunks
of about :data:`CHUNK_BYTES`, so memory stays flat however many rows the file holds.
"""

from __future__ import annotations

from typing import Iterator

import h5py
import numpy as np

from .store import FeatureFile
from .store.gather import read_rows

CHUNK_BYTES = 64 << 20  # about this many bytes of float32 features per chunk read
BLOCK_ROWS = 256  # a shuffled pass reads contiguous blocks of this many rows, in random order


class Rows:
    """The rows ``index`` (all when None) of ``split`` in an open feature file: labels and image hashes in
    memory, features read on demand as float32 (NaN or infinite values refused)."""

    def __init__(self, f: FeatureFile, split: str, index: np.ndarray | None = None):
        self._f, self.split, self.index = f, split, index
        self._features = f.features(split)
        self.y = self.column("labels")
        self.shape = tuple(self._features.shape[1:])
        self._held: np.ndarray | None = None

    @classmethod
    def originals(cls, f: FeatureFile, split: str) -> "Rows":
        """The rows of the images themselves (view 0), not their augmented views."""
        view = f.column(split, "view")
        return cls(f, split, None if (view == 0).all() else np.flatnonzero(view == 0))

    def __len__(self) -> int:
        return len(self.y)

    @property
    def nbytes(self) -> int:
        """Bytes of these rows' features as float32."""
        return len(self) * int(np.prod(self.shape)) * 4

    @property
    def groups(self) -> np.ndarray:
        """Each row's image hash (the augmented views of one image share it)."""
        return self.column("sha256")

    def column(self, name: str) -> np.ndarray:
        """One column of these rows (``paths``, ``sha256``, ``view``, ...)."""
        values = self._f.column(self.split, name)
        return values if self.index is None else values[self.index]

    def subset(self, positions: np.ndarray) -> "Rows":
        """The rows at ``positions`` (sorted) of these."""
        return Rows(self._f, self.split, np.asarray(positions) if self.index is None else self.index[positions])

    def held(self) -> np.ndarray:
        """All features, read once and kept (float32, one copy)."""
        if self._held is None:
            self._held = self._read(np.arange(len(self)))
        return self._held

    def _chunk_rows(self) -> int:
        return max(1, CHUNK_BYTES // max(1, self.nbytes // max(1, len(self))))

    def chunks(self, rng: np.random.Generator | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(X, y)`` chunks covering every row once: in order, or, given ``rng``, random blocks of
        :data:`BLOCK_ROWS` rows per chunk with the rows shuffled (classes mixed however the file is sorted)."""
        if self._held is not None and rng is None:
            yield self._held, self.y
            return
        size = self._chunk_rows()
        if rng is None:
            for start in range(0, len(self), size):
                positions = np.arange(start, min(start + size, len(self)))
                yield self._read(positions), self.y[positions]
            return
        blocks = rng.permutation(-(-len(self) // BLOCK_ROWS))
        per_chunk = max(1, size // BLOCK_ROWS)
        for start in range(0, len(blocks), per_chunk):
            positions = np.concatenate([np.arange(b * BLOCK_ROWS, min((b + 1) * BLOCK_ROWS, len(self)))
                                        for b in np.sort(blocks[start:start + per_chunk])])
            order = rng.permutation(len(positions))
            X = self._held[positions] if self._held is not None else self._read(positions)
            yield X[order], self.y[positions][order]

    def _read(self, positions: np.ndarray) -> np.ndarray:
        """Features of ``positions`` (sorted) as float32, read in contiguous slices."""
        rows = positions if self.index is None else self.index[positions]
        X = read_rows(self._features, rows) if isinstance(self._features, h5py.Dataset) else self._features[rows]
        return self._f.finite(self.split, X.astype(np.float32, copy=False))

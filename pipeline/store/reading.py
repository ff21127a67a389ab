"""Reading a published feature file: validated on open, never blocking, never half-written.

A whole file holds its features; a segmented one (a manifest) points into segment files, which are all opened
and checked when the manifest is, so a reader keeps the version it opened even after a writer deletes them."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from ..errors import PipelineError
from . import segments as seg
from .gather import SegmentedFeatures
from .layout import Columns, Key, layout_problem, segmented

OPEN_ATTEMPTS = 5  # a writer may publish a new version (and delete segments) between opening a manifest and them


class FeatureFile:
    """Read-only view of a published feature file (never blocks, never sees a half-written file)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise PipelineError(f"feature file not found: {self.path} (run `transfer extract` first)")
        for attempt in range(OPEN_ATTEMPTS):
            published = os.stat(self.path).st_ino
            self._open_manifest()
            try:
                self._open_segments()
                return
            except FileNotFoundError as exc:
                self.close()
                if attempt + 1 == OPEN_ATTEMPTS or os.stat(self.path).st_ino == published:
                    raise PipelineError(f"{self.path} is not a usable feature file: segment {Path(exc.filename).name} "
                                        "is missing (delete the file and rerun `transfer extract`)") from None
            except ValueError as exc:
                self.close()
                raise PipelineError(f"{self.path} is not a usable feature file: {exc} "
                                    "(delete it and rerun `transfer extract`)") from None

    def _open_manifest(self) -> None:
        self._files: list[h5py.File] = []
        try:
            self._f = h5py.File(self.path, "r", locking=False)
        except OSError:
            raise PipelineError(f"{self.path} is not an HDF5 feature file (make one with `transfer extract`)") from None
        self._columns = Columns(self._f)
        problem = layout_problem(self._f, self._columns)
        if problem:
            self._f.close()
            raise PipelineError(f"{self.path} is not a usable feature file: {problem} "
                                "(delete it and rerun `transfer extract`)")

    def _open_segments(self) -> None:
        """The places rows live (:attr:`segments`), each segment file opened and checked: its keys must be the
        manifest's for every row that points into it, its rows of one shape and type."""
        if not segmented(self._f):
            self.segments = [seg.Segment(None, s, self._f[s]["features"]) for s in self.splits]
            self._where = {s: (np.full(self._f[s]["features"].shape[0], i, np.int64),
                               np.arange(self._f[s]["features"].shape[0])) for i, s in enumerate(self.splits)}
            return
        table = self._f["segments"]
        directory, opened = seg.folder(self.path), {}
        self.segments = []
        for name, group, rows in zip(table["file"].asstr()[()], table["group"].asstr()[()], table["rows"][()]):
            if name not in opened:
                opened[name] = seg.open_file(directory, name)
                self._files.append(opened[name])
            problem = seg.problem(opened[name], group, int(rows))
            if problem:
                raise ValueError(f"segment {name}: {problem}")
            self.segments.append(seg.Segment(name, group, opened[name][group]["features"]))
        if len({(s.features.shape[1:], s.features.dtype) for s in self.segments}) > 1:
            raise ValueError("its segments hold rows of different shapes or types")
        self._where = {s: (self.column(s, "segment").astype(np.int64), self.column(s, "row").astype(np.int64))
                       for s in self.splits}
        for split, (segment, row) in self._where.items():
            sha, view = self._f[split]["sha256"][()], self.column(split, "view")
            for i in np.unique(segment):
                g, mine = self.segments[i].features.parent, segment == i
                if not (np.array_equal(g["sha256"][()][row[mine]], sha[mine])
                        and np.array_equal(g["view"][()][row[mine]], view[mine])):
                    raise ValueError(f"segment {self.segments[i].name} holds other images than /{split} says")

    def __enter__(self) -> "FeatureFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for f in [self._f, *self._files]:
            f.close()

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
        """One column of a split (strings as ``str``), read once and shared: read-only."""
        return self._columns(split, name)

    def features(self, split: str) -> h5py.Dataset | SegmentedFeatures:
        """One split's features, read like an ``h5py.Dataset`` (``[()]``, ``[a:b]``, ``[i]``, ``.shape``)."""
        if not segmented(self._f):
            return self._f[split]["features"]
        first = self.segments[0].features if self.segments else None
        shape, dtype = (first.shape[1:], first.dtype) if first is not None else ((0,), np.float32)
        return SegmentedFeatures(self.segments, *self._where[split], shape, dtype)

    def locations(self) -> dict[Key, tuple[int, int]]:
        """Every stored (sha256, view) and one place its features live: (index into :attr:`segments`, row)."""
        keys, places = [], []
        for split in self.splits:
            segment, row = self._where[split]
            keys += zip(self.column(split, "sha256").tolist(), self.column(split, "view").tolist())
            places += zip(segment.tolist(), row.tolist())
        return dict(zip(reversed(keys), reversed(places)))  # the first place of a key wins

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
        y = self.column(split, "labels").copy()
        if originals_only:
            keep = self.column(split, "view") == 0
            X, y = X[keep], y[keep]
        return X, y



def load(path: str | os.PathLike, split: str = "train") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(X, y, class_names)`` for one split of a feature file.

    Examples
    --------
    >>> X, y, classes = load("cache/flowers/mobilenet_v2-160-avg.h5", "train")   # doctest: +SKIP
    """
    with FeatureFile(path) as f:
        X, y = f.load(split)
        return X, y, f.classes

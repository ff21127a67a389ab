"""Part files: finished batches, each a small HDF5 file renamed into place when complete."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from pathlib import Path

import h5py
import numpy as np

from .layout import HEX, SHA, Key, kind_ok, plain, recorded_runtimes, runtimes_problem, stored


def fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def part_problem(f: h5py.File, fingerprint: str) -> str:
    """What keeps an HDF5 file from being a part file of the config ``fingerprint`` ('' when nothing does):
    plain columns of one length, 64-hex sha256 keys, views of 0 or more, finite float features."""
    columns = [f.get(name) for name in ("sha256", "view", "features")]
    if not all(plain(ds) and stored(ds) for ds in columns):
        return "its columns are missing or stored elsewhere"
    sha, view, features = columns
    if f.attrs.get("fingerprint") != fingerprint:
        return "it was written for other settings"
    if runtimes_problem(f.attrs):
        return runtimes_problem(f.attrs)
    if not (kind_ok(sha, "str") and kind_ok(view, "iu") and kind_ok(features, "f")
            and sha.shape[0] == view.shape[0] == features.shape[0]):
        return "its columns have the wrong types or lengths"
    if any(len(k) != 64 or not HEX.issuperset(k) for k in sha.asstr()[()]) or (view[()] < 0).any():
        return "its keys are not sha256 hashes and views"
    if not np.isfinite(features[()]).all():
        return "its features hold NaN or infinite values"
    return ""


class Parts:
    """A folder of finished batches, each a small HDF5 file renamed into place when complete.

    Part files are checked before they are trusted (:func:`part_problem`, and one row shape for all):
    a part that fails is deleted, and named in :attr:`dropped`."""

    def __init__(self, directory: Path, fingerprint: str = ""):
        self.dir, self.fingerprint = directory, fingerprint
        self.dropped: list[str] = []
        self.runtimes: dict[Path, list[str]] = {}  # part -> the runtimes that computed it, filled by index()

    def write(self, keys: list[Key], features: np.ndarray, runtime: str = "tensorflow") -> Path:
        """A part file of ``features`` keyed by ``keys``, computed by ``runtime``."""
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.dir / f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.h5"
        tmp = final.with_suffix(".tmp")
        with h5py.File(tmp, "w", locking=False) as f:
            f.attrs["fingerprint"] = self.fingerprint
            f.attrs["runtimes"] = runtime
            f["sha256"] = np.array([k[0] for k in keys], dtype=SHA)
            f["view"] = np.array([k[1] for k in keys], dtype=np.int32)
            f["features"] = features
        fsync(tmp)  # a power cut after the rename must not leave a part that looks whole but is not
        os.replace(tmp, final)
        return final

    def files(self) -> list[Path]:
        return sorted(self.dir.glob("part-*.h5")) if self.dir.is_dir() else []

    def _drop(self, part: Path, why: str) -> None:
        part.unlink(missing_ok=True)
        self.dropped.append(f"dropped part file {part.name}: {why}")

    def index(self, row_shape: tuple | None = None) -> dict[Key, tuple[Path, int]]:
        """Where each key's features are, over the valid part files whose rows have ``row_shape`` (by
        default the shape most rows have)."""
        found: list[tuple[Path, tuple, np.ndarray, np.ndarray]] = []
        for part in self.files():
            try:
                with h5py.File(part, "r", locking=False) as f:
                    problem = part_problem(f, self.fingerprint)
                    if not problem:
                        found.append((part, f["features"].shape[1:], f["sha256"].asstr()[()], f["view"][()]))
                        self.runtimes[part] = recorded_runtimes(f.attrs)
            except OSError:  # a part is renamed into place only when complete: this is not one of ours
                problem = "it is not a readable HDF5 file"
            if problem:
                self._drop(part, problem)
        if row_shape is None:
            rows = Counter()
            for _, shape, shas, _ in found:
                rows[shape] += len(shas)
            row_shape = rows.most_common(1)[0][0] if rows else None
        where: dict[Key, tuple[Path, int]] = {}
        for part, shape, shas, views in found:
            if shape != row_shape:
                self._drop(part, f"its rows have shape {shape}, the others {row_shape}")
                continue
            for i, (sha, view) in enumerate(zip(shas, views)):
                where[(sha, int(view))] = (part, i)
        return where

    def row_shape(self, index: dict[Key, tuple[Path, int]]) -> tuple | None:
        """The shape of one row of features in the indexed part files (None when there is none)."""
        for part, _ in index.values():
            with h5py.File(part, "r", locking=False) as f:
                return f["features"].shape[1:]
        return None

    def clear(self) -> None:
        if self.dir.is_dir():
            for p in self.dir.iterdir():
                p.unlink(missing_ok=True)
            self.dir.rmdir()

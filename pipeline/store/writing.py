"""The writer side of a feature file: one writer at a time, part files merged with the previous file, and an
atomic commit."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import h5py
import numpy as np

from ..config import FeatureConfig, differences
from ..errors import CacheLocked, PipelineError
from ..images import transient
from ..locks import holder, open_lock, stamp
from .layout import CHUNK_ROWS, SHA, STR, Key, Row, recorded_runtimes
from .parts import Parts, fsync
from .reading import FeatureFile


@contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """One writer per feature file; a second one gets :class:`CacheLocked` naming the first."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = open_lock(lock_path)
    except OSError as exc:
        raise PipelineError(f"cannot write the cache folder {path.parent} ({exc.strerror or exc}); "
                            "pass --cache-dir a folder you can write to") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CacheLocked(f"{path} is locked by another run ({holder(fd)}); wait for it to finish and rerun") from None
        stamp(fd)
        for stale in path.parent.glob(f"{path.name}.tmp-*"):
            stale.unlink(missing_ok=True)  # an earlier commit was killed before its rename
        yield
    finally:
        os.close(fd)


class _Sources:
    """Fetches features for keys from the previous file and from part files, in bulk."""

    def __init__(self, old: FeatureFile | None, old_index: dict, parts_index: dict):
        self.old, self.old_index, self.parts_index = old, old_index, parts_index

    def fetch(self, keys: list[Key]) -> np.ndarray:
        by_origin: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
        for out_row, key in enumerate(keys):  # the published file first: a part never overrides its rows
            if key in self.old_index:
                split, i = self.old_index[key]
                by_origin[("old", split)].append((out_row, i))
            else:
                part, i = self.parts_index[key]
                by_origin[("part", part)].append((out_row, i))
        out = None
        for (kind, where), pairs in by_origin.items():
            src_rows = np.array([i for _, i in pairs])
            unique, inverse = np.unique(src_rows, return_inverse=True)
            if kind == "part":
                with h5py.File(where, "r", locking=False) as f:
                    block = f["features"][()][unique]
            else:
                block = self.old.features(where)[unique]
            if out is None:
                out = np.empty((len(keys), *block.shape[1:]), dtype=block.dtype)
            out[[o for o, _ in pairs]] = block[inverse]
        return out


def _strings(values: list[str], dtype) -> np.ndarray:
    return np.array(values, dtype=object).astype(dtype) if values else np.zeros(0, dtype)


def _write_split(f: h5py.File, split: str, rows: list[Row], sources: _Sources, dtype: str, shape: tuple) -> None:
    g = f.create_group(split)
    g["labels"] = np.array([r.label for r in rows], dtype=np.int32)
    g["paths"] = _strings([r.path for r in rows], STR)
    g["sha256"] = _strings([r.sha256 for r in rows], SHA)
    g["view"] = np.array([r.view for r in rows], dtype=np.int32)
    row_bytes = 4 * int(np.prod(shape))
    if not row_bytes:  # no image could be read anywhere: the row shape is unknown, the split is empty
        g.create_dataset("features", shape=(0, *shape), dtype=dtype)
        return
    chunk = max(1, min(CHUNK_ROWS, len(rows), 2**20 // row_bytes))
    feats = g.create_dataset("features", shape=(len(rows), *shape), maxshape=(None, *shape), dtype=dtype,
                             chunks=(chunk, *shape))
    for start in range(0, len(rows), CHUNK_ROWS):
        block = sources.fetch([r.key for r in rows[start:start + CHUNK_ROWS]])
        feats[start:start + len(block)] = block.astype(dtype, copy=False)




def _commit(path: Path, config: dict, classes: list[str], splits: dict[str, list[Row]], errors: list[dict],
            sources: _Sources, feature_shape: tuple) -> None:
    """Write the complete new file beside the old one, fsync it, and atomically replace the old one.

    A disk without room for the new file is refused before writing, and one that fills up while writing
    ends in a :class:`PipelineError`; either way the previous file stays as it was."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    need = sum(len(rows) for rows in splits.values()) * (int(np.prod(feature_shape)) * 4 + 200) + (1 << 20)
    free = shutil.disk_usage(path.parent).free
    if free < need:
        raise PipelineError(f"not enough disk space to write {path} (about {need / 1e6:.0f} MB needed, "
                            f"{free / 1e6:.0f} MB free); free some space and rerun: finished batches are kept")
    try:
        with h5py.File(tmp, "w", locking=False) as f:
            f.attrs.update({k: v for k, v in config.items() if v is not None})
            f["classes"] = _strings(classes, STR)
            for split, rows in splits.items():
                _write_split(f, split, rows, sources, config["store_dtype"], feature_shape)
            e = f.create_group("errors")
            e["path"] = _strings([x["path"] for x in errors], STR)
            e["sha256"] = _strings([x.get("sha256", "") for x in errors], SHA)
            e["reason"] = _strings([x["reason"] for x in errors], STR)
        fsync(tmp)
        if sources.old is not None:
            sources.old.close()
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(exc) or "errno = 28" in str(exc):
            raise PipelineError(f"the disk filled up while writing {path}; the previous file is untouched and "
                                "finished batches are kept: free some space and rerun") from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


class FeatureCache:
    """The writer side of one feature file: lock, previous file, part files, commit.

    Examples
    --------
    >>> with FeatureCache(path, config) as cache:                     # doctest: +SKIP
    ...     todo = cache.missing(keys)
    ...     engine.run(files, todo, cache.parts)
    ...     cache.commit(classes, splits, errors)
    """

    def __init__(self, path: str | os.PathLike, config: FeatureConfig):
        self.path, self.config = Path(path), config
        fingerprint = config.fingerprint()
        self.parts = Parts(self.path.with_name(f"{self.path.name}.parts-{fingerprint}"), fingerprint)
        self.notes: list[str] = []
        self.known_errors: dict[str, str] = {}  # sha256 -> reason, from the previous file
        self._old: FeatureFile | None = None
        self._old_index: dict[Key, tuple[str, int]] = {}
        self._reusable = False  # the previous file has this config's fingerprint
        self._stored: set[Key] = set()
        self._lock = writer_lock(self.path)

    def __enter__(self) -> "FeatureCache":
        self._lock.__enter__()
        try:
            self._open_previous()
            self._stored = set(self._old_index) | set(self._parts_index())
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            self._old.close()
        self._lock.__exit__(*exc)

    def _open_previous(self) -> None:
        """Open the published file; its rows and known errors count only if it has this config's fingerprint."""
        if not self.path.exists():
            return
        try:
            self._old = FeatureFile(self.path)
        except PipelineError as exc:
            self.notes.append(f"ignoring unreadable {self.path.name} ({exc}); it will be rebuilt")
            return
        old = self._old.config
        if differences(old, self.config.attrs()):
            changed = [k for k in ("weights_sha256", "format_version") if old.get(k) != getattr(self.config, k)]
            self.notes.append(f"{self.path.name} was made with different {', '.join(changed) or 'settings'}: "
                              "recomputing all")
            return
        self._reusable = True
        self._old_index = self._old.index()
        self.known_errors = {e["sha256"]: e["reason"] for e in self._old.errors()  # the machine's failures retried
                             if e["sha256"] and not transient(e["reason"])}

    def _old_shape(self) -> tuple | None:
        if not self._old_index:
            return None
        return self._old.features(next(iter(self._old_index.values()))[0]).shape[1:]

    def _parts_index(self) -> dict[Key, tuple[Path, int]]:
        index = self.parts.index(self._old_shape())
        self.notes += [d for d in self.parts.dropped if d not in self.notes]
        return index

    def stored(self) -> set[Key]:
        """Every key whose features were on disk when the cache was opened (the previous file or valid
        finished part files)."""
        return self._stored

    def recorded(self) -> dict[str, str]:
        """Path -> sha256 of every image the previous file (with this config) holds a row or an error for."""
        if not self._reusable:
            return {}
        found = {e["path"]: e["sha256"] for e in self._old.errors() if e["sha256"]}
        for split in self._old.splits:
            found.update(zip(self._old.column(split, "paths"), self._old.column(split, "sha256")))
        return found

    def missing(self, keys: Iterable[Key]) -> list[Key]:
        """The keys to compute: not stored, and not from a file already known to fail."""
        return [k for k in keys if k not in self._stored and k[0] not in self.known_errors]

    def removed(self, kept: set[Key]) -> int:
        """How many keys of the previous file are not in ``kept``."""
        return sum(1 for k in self._old_index if k not in kept)

    def commit(self, classes: list[str], splits: dict[str, list[Row]], errors: list[dict]) -> bool:
        """Publish exactly these rows and errors (atomically); False when the file already holds them."""
        parts_index = self._parts_index()
        if not parts_index and self._holds(classes, splits, errors):
            return False
        shape = self._old_shape() or self.parts.row_shape(parts_index) or (0,)
        config = {**self.config.attrs(), "runtimes": self._runtimes(splits, parts_index)}
        _commit(self.path, config, classes, splits, errors, _Sources(self._old, self._old_index, parts_index), shape)
        self._old = None  # closed by the commit before its rename
        self.parts.clear()
        for stale in self.path.parent.glob(f"{self.path.name}.parts-*"):
            Parts(stale).clear()
        return True

    def _runtimes(self, splits: dict[str, list[Row]], parts_index: dict[Key, tuple[Path, int]]) -> str:
        """The runtimes that computed the rows about to be published, comma-separated (the published file's
        rows come from it, as :class:`_Sources` fetches them)."""
        old = recorded_runtimes(self._old.config) if self._old_index else []
        used: set[str] = set()
        for rows in splits.values():
            for r in rows:
                used.update(old if r.key in self._old_index else self.parts.runtimes[parts_index[r.key][0]])
        return ",".join(sorted(used))

    def _holds(self, classes: list[str], splits: dict[str, list[Row]], errors: list[dict]) -> bool:
        """Whether the previous file (with this config) already holds exactly these rows and errors."""
        old = self._old
        if not self._reusable or old.classes != classes or set(old.splits) != set(splits):
            return False
        if sorted((e["path"], e["reason"]) for e in old.errors()) != sorted((e["path"], e["reason"]) for e in errors):
            return False
        for split, rows in splits.items():
            stored = list(zip(old.column(split, "paths"), old.column(split, "labels").tolist(),
                              old.column(split, "sha256"), old.column(split, "view").tolist()))
            if stored != [(r.path, r.label, r.sha256, r.view) for r in rows]:
                return False
        return True

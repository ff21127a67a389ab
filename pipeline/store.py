"""The HDF5 feature file: layout, part files, atomic commit, writer lock, readers.

Layout (see ``cache/README.md``)::

    /                 attrs: the whole config (backbone, weights_sha256, input_size, pooling, ...)
    /classes          (C,) utf-8
    /<split>/features (N, ...) float32 or float16, chunked by rows
    /<split>/labels   (N,) int32 index into /classes
    /<split>/paths    (N,) utf-8, relative to the dataset root
    /<split>/sha256   (N,) the image's content hash
    /<split>/view     (N,) 0 = the image itself, k > 0 = its k-th augmented view
    /errors/{path,sha256,reason}  inputs that could not be read

The ``runtimes`` attribute names the runtimes that computed the rows; it is not part of the config's
fingerprint: features from either runtime agree within a tolerance and share one file.

Writers never touch the published file: finished batches land as part files (renamed into place),
and a commit writes a complete new file beside the old one and ``os.replace``s it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import socket
import time
import uuid
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import h5py
import numpy as np

from .config import (FORMAT_VERSION, POOLINGS, PRECISIONS, PREPROCESSINGS, RUNTIMES, STORE_DTYPES, FeatureConfig,
                     differences)
from .datasets import path_problem
from .errors import CacheLocked, PipelineError

STR = h5py.string_dtype("utf-8")
SHA = h5py.string_dtype("ascii", 64)
CHUNK_ROWS = 512
Key = tuple[str, int]  # (sha256, view)


@dataclass(frozen=True)
class Row:
    """One output row: an image (or one augmented view of it) and where its features come from."""

    path: str
    label: int
    sha256: str
    view: int = 0

    @property
    def key(self) -> Key:
        return (self.sha256, self.view)


# ---------------------------------------------------------------- reading


COLUMNS = {"features": "f", "labels": "iu", "view": "iu", "paths": "str", "sha256": "str"}
HEX = frozenset("0123456789abcdef")


def _kind_ok(ds: h5py.Dataset, kind: str) -> bool:
    if kind == "str":
        return ds.ndim == 1 and h5py.check_string_dtype(ds.dtype) is not None
    if kind == "f":
        return ds.dtype.kind == "f" and ds.ndim >= 2
    return ds.dtype.kind in kind and ds.ndim == 1


def _plain(ds) -> bool:
    """A dataset stored in this file, not elsewhere (external storage, a virtual dataset)."""
    return isinstance(ds, h5py.Dataset) and not ds.external and not ds.is_virtual


def _stored(ds: h5py.Dataset) -> bool:
    """Whether the file really holds the rows a dataset declares (a cheap file cannot declare 2**28 rows:
    reading those would allocate gigabytes of fill values)."""
    if not ds.shape or ds.shape[0] == 0:
        return True
    need = ds.size * ds.dtype.itemsize if h5py.check_string_dtype(ds.dtype) is None else ds.shape[0]
    return ds.id.get_storage_size() >= need


def attrs_problem(attrs) -> str:
    """What is wrong with a feature file's root attributes ('' when nothing is): each setting of the right
    type and among the values this version writes."""
    def text(name: str, allowed: tuple = ()) -> bool:
        value = attrs.get(name)
        return isinstance(value, str) and (not allowed or value in allowed)

    size = attrs.get("input_size")
    if not (isinstance(size, (int, np.integer)) and 8 <= size <= 4096):
        return f"attribute input_size {size!r} is not an image size in pixels"
    for name, allowed in (("backbone", ()), ("weights", ()), ("weights_sha256", ()), ("augment", ()),
                          ("pooling", POOLINGS), ("preprocess", PREPROCESSINGS), ("precision", PRECISIONS),
                          ("store_dtype", STORE_DTYPES)):
        if not text(name, allowed):
            return f"attribute {name} {attrs.get(name)!r} is missing or not a value `transfer extract` writes"
    return _runtimes_problem(attrs)


def _runtimes_problem(attrs) -> str:
    """What is wrong with the optional ``runtimes`` attribute ('' when nothing is): runtimes this version
    knows, comma-separated."""
    value = attrs.get("runtimes", "")
    if not (isinstance(value, str) and set(_names(value)) <= set(RUNTIMES)):
        return f"attribute runtimes {value!r} is not a comma-separated list of {', '.join(RUNTIMES)}"
    return ""


def _names(text: str) -> list[str]:
    return text.split(",") if text else []


def recorded_runtimes(attrs) -> list[str]:
    """The runtimes that computed a feature file's (or a part file's) rows; files written before the attribute
    existed were all computed by TensorFlow."""
    if "runtimes" in attrs:
        return _names(attrs["runtimes"])
    return ["tensorflow"]


def layout_problem(f: h5py.File) -> str:
    """What keeps ``f`` from being a feature file this version can read ('' when nothing does).

    Only plain numbers and strings in the documented layout pass: no links to other files, no external
    or virtual storage, no opaque or object data (nothing a reader could be tricked into running), no more
    rows declared than stored, labels inside /classes, views of 0 or more, and image paths that stay inside
    the dataset root.
    """
    if "format_version" not in f.attrs or "classes" not in f:
        return "it is an HDF5 file but not a feature file written by `transfer extract`"
    version = f.attrs["format_version"]
    if not (np.ndim(version) == 0 and np.issubdtype(np.asarray(version).dtype, np.integer)
            and int(version) == FORMAT_VERSION):
        return f"it has format_version {version!r}; this version reads {FORMAT_VERSION}"
    problem = attrs_problem(f.attrs)
    if problem:
        return problem
    links: list[str] = []
    f.visititems_links(lambda name, link: links.append(name) if not isinstance(link, h5py.HardLink) else None)
    if links:
        return f"it links to other files or paths ({links[0]})"
    if not (_plain(f["classes"]) and _kind_ok(f["classes"], "str") and _stored(f["classes"])):
        return "/classes is not a list of strings"
    for split in ("train", "val", "test"):
        if split not in f:
            continue
        g = f[split]
        if not isinstance(g, h5py.Group):
            return f"/{split} is not a group"
        lengths = set()
        for name, kind in COLUMNS.items():
            ds = g.get(name)
            if not (_plain(ds) and _kind_ok(ds, kind)):
                return f"/{split}/{name} is missing or has the wrong type or shape"
            if not _stored(ds):
                return f"/{split}/{name} declares {ds.shape[0]} rows but the file does not hold them"
            lengths.add(ds.shape[0])
        if len(lengths) != 1:
            return f"the columns of /{split} have different lengths"
        labels = g["labels"][()]
        if len(labels) and not (0 <= labels.min() and labels.max() < f["classes"].shape[0]):
            return f"/{split}/labels point outside /classes"
        views = g["view"][()]
        if len(views) and views.min() < 0:
            return f"/{split}/view holds negative values"
        bad = next((p for p in g["paths"].asstr()[()] if path_problem(p)), None)
        if bad is not None:
            return f"/{split}/paths: {path_problem(bad)}"
    errors = f.get("errors")
    if errors is not None:
        columns = [errors.get(c) if isinstance(errors, h5py.Group) else None for c in ("path", "sha256", "reason")]
        if not all(_plain(ds) and _kind_ok(ds, "str") and _stored(ds) for ds in columns) \
                or len({ds.shape[0] for ds in columns}) != 1:
            return "/errors is not three string columns of one length (path, sha256, reason)"
    return ""


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


# ---------------------------------------------------------------- part files


def part_problem(f: h5py.File, fingerprint: str) -> str:
    """What keeps an HDF5 file from being a part file of the config ``fingerprint`` ('' when nothing does):
    plain columns of one length, 64-hex sha256 keys, views of 0 or more, finite float features."""
    columns = [f.get(name) for name in ("sha256", "view", "features")]
    if not all(_plain(ds) and _stored(ds) for ds in columns):
        return "its columns are missing or stored elsewhere"
    sha, view, features = columns
    if f.attrs.get("fingerprint") != fingerprint:
        return "it was written for other settings"
    if _runtimes_problem(f.attrs):
        return _runtimes_problem(f.attrs)
    if not (_kind_ok(sha, "str") and _kind_ok(view, "iu") and _kind_ok(features, "f")
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
        _fsync(tmp)  # a power cut after the rename must not leave a part that looks whole but is not
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


# ---------------------------------------------------------------- lock


@contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """One writer per feature file; a second one gets :class:`CacheLocked` naming the first."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise PipelineError(f"cannot write the cache folder {path.parent} ({exc.strerror or exc}); "
                            "pass --cache-dir a folder you can write to") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            raise CacheLocked(f"{path} is locked by another run ({holder}); wait for it to finish and rerun") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        for stale in path.parent.glob(f"{path.name}.tmp-*"):
            stale.unlink(missing_ok=True)  # an earlier commit was killed before its rename
        yield
    finally:
        os.close(fd)


# ---------------------------------------------------------------- commit


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


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


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
        _fsync(tmp)
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


# ---------------------------------------------------------------- the writer


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
        self.known_errors = {e["sha256"]: e["reason"] for e in self._old.errors() if e["sha256"]}

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

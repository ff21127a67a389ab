"""The writer side of a feature file: one writer at a time, part files merged with the previous file, and an
atomic commit.

The first version of a file is written whole (features inside it). Later commits write only what changed: the new
rows go to one new segment file, the previous whole file is hard-linked in as a segment (no copy), and a new
manifest, rows and where they live, replaces the published file atomically. Segments no version points to any more
are deleted after the swap; :mod:`.compaction` decides which small or wasteful segments a commit rewrites."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import AbstractSet, Callable, Iterable, Iterator

import h5py
import numpy as np

from ..config import FeatureConfig, differences
from ..errors import CacheLocked, PipelineError
from ..images import transient
from ..locks import holder, open_lock, stamp
from . import segments as seg
from .compaction import Run, plan, wasteful
from .gather import read_rows
from .layout import CHUNK_ROWS, SEGMENTED, SHA, STR, Key, Row, recorded_runtimes
from .parts import Parts, fsync
from .reading import FeatureFile

Place = tuple[int, int]  # (index into the manifest's /segments, row in that segment)


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
    """Fetches features for keys from the previous file (its segments) and from part files, in bulk."""

    def __init__(self, old: FeatureFile | None, old_index: dict[Key, Place], parts_index: dict):
        self.old, self.old_index, self.parts_index = old, old_index, parts_index

    def fetch(self, keys: list[Key]) -> np.ndarray:
        by_origin: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
        for out_row, key in enumerate(keys):  # the published file first: a part never overrides its rows
            if key in self.old_index:
                segment, i = self.old_index[key]
                by_origin[("old", segment)].append((out_row, i))
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
                block = read_rows(self.old.segments[where].features, unique)
            if out is None:
                out = np.empty((len(keys), *block.shape[1:]), dtype=block.dtype)
            out[[o for o, _ in pairs]] = block[inverse]
        return out


def _strings(values: list[str], dtype) -> np.ndarray:
    return np.array(values, dtype=object).astype(dtype) if values else np.zeros(0, dtype)


def _write_split(f: h5py.File, split: str, rows: list[Row], write_features: Callable[[h5py.Group, list[Row]], None]) -> None:
    g = f.create_group(split)
    g["labels"] = np.array([r.label for r in rows], dtype=np.int32)
    g["paths"] = _strings([r.path for r in rows], STR)
    g["sha256"] = _strings([r.sha256 for r in rows], SHA)
    g["view"] = np.array([r.view for r in rows], dtype=np.int32)
    write_features(g, rows)


def _inline(sources: _Sources, dtype: str, shape: tuple) -> Callable[[h5py.Group, list[Row]], None]:
    """Writes a split's features into the file itself (a whole file)."""
    def write(g: h5py.Group, rows: list[Row]) -> None:
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
    return write


def _placed(place: dict[Key, Place]) -> Callable[[h5py.Group, list[Row]], None]:
    """Writes where each of a split's rows lives (a manifest)."""
    def write(g: h5py.Group, rows: list[Row]) -> None:
        places = np.array([place[r.key] for r in rows], dtype=np.int64).reshape(-1, 2)
        g["segment"] = places[:, 0].astype(np.int32)
        g["row"] = places[:, 1]
    return write


def _check_space(path: Path, rows: int, feature_shape: tuple, manifest_rows: int) -> None:
    need = rows * int(np.prod(feature_shape)) * 4 + manifest_rows * 200 + (1 << 20)
    free = shutil.disk_usage(path.parent).free
    if free < need:
        raise PipelineError(f"not enough disk space to write {path} (about {need / 1e6:.0f} MB needed, "
                            f"{free / 1e6:.0f} MB free); free some space and rerun: finished batches are kept")


def _disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and (exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(exc)
                                         or "errno = 28" in str(exc))


def _filled_up(path: Path) -> PipelineError:
    return PipelineError(f"the disk filled up while writing {path}; the previous file is untouched and "
                         "finished batches are kept: free some space and rerun")


def _publish(path: Path, config: dict, classes: list[str], splits: dict[str, list[Row]], errors: list[dict],
             write_features: Callable[[h5py.Group, list[Row]], None], old: FeatureFile | None,
             table: list[tuple[str, str, int]] | None = None) -> None:
    """Write the new version beside the old one (whole, or a manifest with its /segments ``table``), fsync it,
    and atomically replace the old one; a full disk ends in a :class:`PipelineError`, the old file untouched."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w", locking=False) as f:
            f.attrs.update({k: v for k, v in config.items() if v is not None})
            f["classes"] = _strings(classes, STR)
            for split, rows in splits.items():
                _write_split(f, split, rows, write_features)
            e = f.create_group("errors")
            e["path"] = _strings([x["path"] for x in errors], STR)
            e["sha256"] = _strings([x.get("sha256", "") for x in errors], SHA)
            e["reason"] = _strings([x["reason"] for x in errors], STR)
            if table is not None:
                f.attrs["layout_version"] = SEGMENTED
                t = f.create_group("segments")
                t["file"] = _strings([name for name, _, _ in table], STR)
                t["group"] = _strings([group for _, group, _ in table], STR)
                t["rows"] = np.array([rows for _, _, rows in table], dtype=np.int64)
        fsync(tmp)
        if old is not None:
            old.close()
        os.replace(tmp, path)
        seg.fsync_dir(path.parent)
    except OSError as exc:
        if _disk_full(exc):
            raise _filled_up(path) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def _commit(path: Path, config: dict, classes: list[str], splits: dict[str, list[Row]], errors: list[dict],
            sources: _Sources, feature_shape: tuple) -> None:
    """Publish a whole file: every row's features inside it. A disk without room for it is refused before
    writing; either way the previous file stays as it was."""
    _check_space(path, sum(len(rows) for rows in splits.values()), feature_shape, 0)
    _publish(path, config, classes, splits, errors, _inline(sources, config["store_dtype"], feature_shape),
             sources.old)
    seg.collect_garbage(seg.folder(path), set())


def _commit_segments(path: Path, config: dict, classes: list[str], splits: dict[str, list[Row]], errors: list[dict],
                     sources: _Sources, feature_shape: tuple, fingerprint: str) -> None:
    """Publish a manifest over the previous file's segments plus one of the new rows: O(new rows) bytes, and
    the rewrites :func:`.compaction.plan` asks for. Segment files written here are deleted if the swap fails."""
    old = sources.old
    keys = list(dict.fromkeys(r.key for rows in splits.values() for r in rows))
    new = [k for k in keys if k not in sources.old_index]
    live: list[dict[int, Key]] = [{} for _ in old.segments]  # per old segment: row -> key, of rows kept
    for k in keys:
        if k in sources.old_index:
            s, i = sources.old_index[k]
            live[s][i] = k
    runs = [Run(len(rows), segment.rows) for rows, segment in zip(live, old.segments)] + [Run(len(new), len(new))]
    groups = plan(runs)
    fresh = len(old.segments)  # the index of the new rows' run

    def copied(group: list[int]) -> bool:
        return len(group) > 1 or group[0] == fresh or wasteful(runs[group[0]])

    _check_space(path, sum(runs[i].live for g in groups if copied(g) for i in g), feature_shape, len(keys))
    directory, created, linked = seg.folder(path), [], None
    table: list[tuple[str, str, int]] = []
    place: dict[Key, Place] = {}
    try:
        for group in groups:
            if not copied(group):
                segment = old.segments[group[0]]
                if segment.name is None and linked is None:  # the previous whole file becomes a segment
                    linked = seg.link(path, directory)
                    created.append(linked)
                place.update({k: (len(table), i) for i, k in live[group[0]].items()})
                table.append((segment.name or linked, segment.group, segment.rows))
                continue
            rows = [k for i in group for k in (new if i == fresh else [live[i][r] for r in sorted(live[i])])]
            name = seg.write(directory, rows, lambda a, b: sources.fetch(rows[a:b]), feature_shape,
                             config["store_dtype"], fingerprint, CHUNK_ROWS)
            created.append(name)
            place.update({k: (len(table), i) for i, k in enumerate(rows)})
            table.append((name, "/", len(rows)))
        seg.fsync_dir(directory)
        _publish(path, config, classes, splits, errors, _placed(place), old, table)
    except BaseException as exc:
        for name in created:
            (directory / name).unlink(missing_ok=True)
        if _disk_full(exc):
            raise _filled_up(path) from None
        raise
    seg.collect_garbage(directory, {name for name, _, _ in table})


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
        self._old_index: dict[Key, Place] = {}
        self._reusable = False  # the previous file has this config's fingerprint
        self._stored: AbstractSet[Key] = frozenset()
        self._lock = writer_lock(self.path)

    def __enter__(self) -> "FeatureCache":
        self._lock.__enter__()
        try:
            self._open_previous()
            parts = self._parts_index()
            self._stored = self._old_index.keys() | parts.keys() if parts else self._old_index.keys()
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
            seg.collect_garbage(seg.folder(self.path), set())
            return
        try:
            self._old = FeatureFile(self.path)
        except PipelineError as exc:
            self.notes.append(f"ignoring unreadable {self.path.name} ({exc}); it will be rebuilt")
            return
        seg.collect_garbage(seg.folder(self.path), {s.name for s in self._old.segments if s.name})
        old = self._old.config
        if differences(old, self.config.attrs()):
            changed = [k for k in ("weights_sha256", "format_version") if old.get(k) != getattr(self.config, k)]
            self.notes.append(f"{self.path.name} was made with different {', '.join(changed) or 'settings'}: "
                              "recomputing all")
            return
        self._reusable = True
        self._old_index = self._old.locations()
        self.known_errors = {e["sha256"]: e["reason"] for e in self._old.errors()  # the machine's failures retried
                             if e["sha256"] and not transient(e["reason"])}

    def _old_shape(self) -> tuple | None:
        if not self._old_index:
            return None
        return self._old.segments[next(iter(self._old_index.values()))[0]].features.shape[1:]

    def _parts_index(self) -> dict[Key, tuple[Path, int]]:
        index = self.parts.index(self._old_shape())
        self.notes += [d for d in self.parts.dropped if d not in self.notes]
        return index

    def stored(self) -> AbstractSet[Key]:
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
        sources = _Sources(self._old, self._old_index, parts_index)
        if any(r.key in self._old_index for rows in splits.values() for r in rows):
            _commit_segments(self.path, config, classes, splits, errors, sources, shape, self.config.fingerprint())
        else:
            _commit(self.path, config, classes, splits, errors, sources, shape)
        self._old = None  # closed by the commit before its rename
        self.parts.clear()
        for stale in self.path.parent.glob(f"{self.path.name}.parts-*"):
            Parts(stale).clear()
        return True

    def _runtimes(self, splits: dict[str, list[Row]], parts_index: dict[Key, tuple[Path, int]]) -> str:
        """The runtimes that computed the rows about to be published, comma-separated (the published file's
        rows come from it, as :class:`_Sources` fetches them)."""
        keys = {r.key for rows in splits.values() for r in rows}
        used = set(recorded_runtimes(self._old.config)) if not keys.isdisjoint(self._old_index) else set()
        for part in {parts_index[k][0] for k in keys.difference(self._old_index)}:
            used.update(self.parts.runtimes[part])
        return ",".join(sorted(used))

    def _holds(self, classes: list[str], splits: dict[str, list[Row]], errors: list[dict]) -> bool:
        """Whether the previous file (with this config) already holds exactly these rows and errors."""
        old = self._old
        if not self._reusable or old.classes != classes or set(old.splits) != set(splits):
            return False
        if sorted((e["path"], e["reason"]) for e in old.errors()) != sorted((e["path"], e["reason"]) for e in errors):
            return False
        for split, rows in splits.items():  # column by column: no tuple per row
            for name, field in (("sha256", "sha256"), ("paths", "path"), ("labels", "label"), ("view", "view")):
                if old.column(split, name).tolist() != [getattr(r, field) for r in rows]:
                    return False
        return True

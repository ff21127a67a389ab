"""The stat index: which photos a rerun need not read, decided from stat data as git's index does.

For every photo a feature file holds, the index records its relative path, size, mtime_ns, ctime_ns, inode and
sha256 as the last run saw them, and the clock reading taken just before that run's scan. A rerun reads a photo's
bytes only when the index cannot vouch for it. It vouches for a path only when all of these hold:

- the photo's stat data equal the entry's (any edit, ``touch``, replacement or rename changes one of them);
- the entry is not *racy*: its mtime and ctime are older than the recorded scan time by more than
  :data:`GRANULARITY_NS` (an edit within one timestamp tick of the read could leave the stat data unchanged);
- the feature file (with this config) records the same sha256 for the same path.

The last rule bounds what a planted or stale index can do: it can never bring in a sha256 the feature file does
not already hold for that path, so at worst it keeps a row whose photo was changed while keeping its stat data
(whoever can write the cache folder can change the feature file itself). ``extract --rehash`` reads every byte.
The index is only an accelerator: a missing or malformed one is ignored with a note and rebuilt.

Layout (HDF5), ``<cache_dir>/stat-index/<dataset>/<feature file name>.stat``::

    /          attrs: format_version (1), dataset_root (absolute path), scanned_ns (ns since the epoch)
    /path      (N,) utf-8, relative to the dataset root
    /size /mtime_ns /ctime_ns  (N,) int64
    /inode     (N,) uint64
    /sha256    (N,) ascii, 64 hex digits
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import h5py
import numpy as np

from .atomic import replacing
from .datasets import Entry, FileStat, Manifest, hash_files, paths_problem
from .store.layout import SHA, STR, kind_ok, plain, stored

FORMAT_VERSION = 1
GRANULARITY_NS = 2_000_000_000  # FAT's 2 s: the coarsest timestamps a dataset folder is likely to live on
FOLDER = "stat-index"
INTS = dict(zip(FileStat._fields, (np.int64, np.int64, np.int64, np.uint64)))  # size, mtime_ns, ctime_ns, inode
Record = tuple[tuple, str]  # stat data (FileStat's fields, in order), sha256
NO_STAT = FileStat(0, 0, 0, 0)  # stands in for the stat data of an entry without (never vouched for)


def location(feature_file: str | os.PathLike) -> Path:
    """Where the stat index of ``<cache_dir>/<dataset>/<name>`` lives: ``<cache_dir>/stat-index/<dataset>/<name>.stat``."""
    feature_file = Path(feature_file)
    return feature_file.parent.parent / FOLDER / feature_file.parent.name / f"{feature_file.name}.stat"


@dataclass(frozen=True)
class StatIndex:
    """What the last run saw of each photo, as columns (a row per photo), and the clock reading taken before its
    scan."""

    scanned_ns: int
    paths: list[str]
    stats: dict[str, np.ndarray]  # one column per field of FileStat, of its type in INTS
    sha256: list[str]

    @property
    def records(self) -> dict[str, Record]:
        """Path -> (stat data, sha256) of every photo listed."""
        return dict(zip(self.paths, zip(zip(*(self.stats[n].tolist() for n in INTS)), self.sha256)))

    def vouched(self, entries: Sequence[Entry], recorded: Mapping[str, str]) -> tuple[dict[str, str], int]:
        """``(path -> sha256 of the photos that need not be read, how many entries the feature file contradicts)``;
        ``recorded`` is the feature file's path -> sha256. An entry is racy (a change right after the last read
        could have kept its stat data) when its mtime or ctime is not older than the scan by the granularity.
        Stat data are compared column by column (NumPy), not photo by photo."""
        if not self.paths or not entries:
            return {}, 0
        at = dict(zip(self.paths, range(len(self.paths))))
        row = np.fromiter((at.get(e.path, -1) for e in entries), np.int64, len(entries))
        stats = [e.stat for e in entries]
        same = (row >= 0) & np.fromiter((s is not None for s in stats), bool, len(stats))
        row[~same] = 0
        stats = [s or NO_STAT for s in stats]
        racy_from = self.scanned_ns - GRANULARITY_NS
        for k, (name, dtype) in enumerate(INTS.items()):
            now = np.fromiter((s[k] for s in stats), dtype, len(stats))
            same &= self.stats[name][row] == now
            if name in ("mtime_ns", "ctime_ns"):
                same &= now < racy_from
        found, contradicted = {}, 0
        for e, r in zip(itertools.compress(entries, same), row[same].tolist()):
            sha, mine = self.sha256[r], recorded.get(e.path)
            if mine == sha:
                found[e.path] = sha
            elif mine is not None:
                contradicted += 1
        return found, contradicted


def records_of(entries: Iterable[Entry]) -> dict[str, Record]:
    """What an index of these hashed entries records."""
    return {e.path: (e.stat, e.sha256) for e in entries if e.stat is not None and e.sha256}


def _load(f: h5py.File, root: str) -> StatIndex | str:
    """The stat index in ``f``, or what keeps it from being one of ``root``: plain columns of one length stored in
    the file, 64-hex sha256 values, distinct UTF-8 paths that stay inside the root (checked on whole columns:
    an index holds a row per photo)."""
    version, scanned = f.attrs.get("format_version"), f.attrs.get("scanned_ns")
    if not (isinstance(version, (int, np.integer)) and version == FORMAT_VERSION):
        return f"format_version {version!r} is not {FORMAT_VERSION}"
    if f.attrs.get("dataset_root") != root:
        return f"it was made for {f.attrs.get('dataset_root')!r}"
    if not (isinstance(scanned, (int, np.integer)) and scanned > 0):
        return f"scanned_ns {scanned!r} is not a time"
    if any(not isinstance(f.get(name, getlink=True), h5py.HardLink) for name in f):
        return "it links to other files or paths"
    columns = {name: f.get(name) for name in ("path", "sha256", *INTS)}
    if not all(plain(ds) for ds in columns.values()):
        return "its columns are missing or stored elsewhere"
    if not all(stored(ds) for ds in columns.values()):
        return "a column declares rows the file does not hold"
    if not (kind_ok(columns["path"], "str") and columns["sha256"].dtype == np.dtype("S64")
            and columns["sha256"].ndim == 1 and all(kind_ok(columns[n], "iu") for n in INTS)):
        return "its columns have the wrong types"
    if len({ds.shape[0] for ds in columns.values()}) != 1:
        return "its columns have different lengths"
    sha = columns["sha256"][()]
    digits = sha.view(np.uint8)
    if not (((digits >= ord("0")) & (digits <= ord("9"))) | ((digits >= ord("a")) & (digits <= ord("f")))).all():
        return "a sha256 value is not 64 hex digits"
    paths = _paths(columns["path"][()].tolist())
    if isinstance(paths, str):
        return paths
    stats = {n: columns[n][()].astype(dtype, copy=False) for n, dtype in INTS.items()}  # compared exactly
    return StatIndex(int(scanned), paths, stats, sha.astype("U64").tolist())


def _paths(raw: list[bytes]) -> list[str] | str:
    """The paths of an index column (read as bytes), or what is wrong with one of them (:func:`paths_problem`)."""
    if not raw:
        return []
    try:
        text = b"\0".join(raw).decode("utf-8")
    except UnicodeDecodeError:
        return "a path is not valid UTF-8"
    paths = text.split("\0")
    if len(paths) != len(raw):  # a path holds a NUL
        paths = [b.decode() for b in raw]
    problem = paths_problem(paths)
    if problem:
        return problem
    if len(set(paths)) != len(paths):
        return "a path is listed twice"
    return paths


def read(path: Path, root: Path) -> tuple[StatIndex | None, str]:
    """The stat index at ``path`` for the dataset ``root``, or ``(None, note)`` when it is absent or unusable."""
    if not path.exists():
        return None, ""
    try:
        with h5py.File(path, "r", locking=False) as f:
            loaded = _load(f, str(root.resolve()))
    except OSError:
        loaded = "it is not an HDF5 file"
    if isinstance(loaded, StatIndex):
        return loaded, ""
    return None, f"ignoring the stat index {path} ({loaded}): every photo is read this run and the index rebuilt"


def write(path: Path, root: Path, records: Mapping[str, Record], scanned_ns: int) -> None:
    """Replace the index at ``path`` whole (a killed run leaves the old one or the new one)."""
    paths = sorted(records)
    stats = list(zip(*(records[p][0] for p in paths))) or [()] * len(INTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp, h5py.File(tmp, "w", locking=False) as f:
        f.attrs.update(format_version=FORMAT_VERSION, dataset_root=str(root.resolve()), scanned_ns=scanned_ns)
        f["path"] = np.array(paths, dtype=object).astype(STR) if paths else np.zeros(0, STR)
        for (name, dtype), column in zip(INTS.items(), stats):
            f[name] = np.array(column, dtype=dtype)
        f["sha256"] = np.array([records[p][1] for p in paths], dtype=SHA)


@dataclass(frozen=True)
class Hashing:
    """A manifest with every sha256 filled in, how many photos were read for it, and what the index was."""

    manifest: Manifest
    read: int
    previous: StatIndex | None
    notes: list[str]


def hash_changed(manifest: Manifest, index_file: Path, recorded: Mapping[str, str], rehash: bool = False) -> Hashing:
    """Hash the photos of ``manifest`` the stat index at ``index_file`` cannot vouch for (all of them with
    ``rehash``); ``recorded`` is the feature file's path -> sha256."""
    index, note = read(index_file, manifest.root)
    notes = [note] if note else []
    vouched, contradicted = index.vouched(manifest.entries, recorded) if index else ({}, 0)
    if contradicted:
        notes.append(f"the stat index {index_file} disagrees with the feature file on {contradicted} photo(s): "
                     "they were read again")
    hashed = hash_files(manifest, known=None if rehash else vouched)
    if rehash:
        changed = sum(1 for e in hashed.entries if vouched.get(e.path, e.sha256) != e.sha256)
        if changed:
            notes.append(f"--rehash: {changed} photo(s) had changed while their size, times and inode had not")
    return Hashing(hashed, len(manifest.entries) - (0 if rehash else len(vouched)), index, notes)


def save(index_file: Path, hashing: Hashing, scanned_ns: int) -> list[str]:
    """Write the index of a committed run (when it differs from the previous one); a note when it cannot be
    written: that costs the next run a full read, nothing else."""
    previous = hashing.previous
    if previous is not None and not hashing.read and len(hashing.manifest.entries) == len(previous.paths):
        return []  # the previous index vouched for every photo (same stat data, same sha256) and lists no other
    records = records_of(hashing.manifest.entries)
    try:
        write(index_file, hashing.manifest.root, records, scanned_ns)
    except OSError as exc:
        return [f"could not write the stat index {index_file} ({exc.strerror or exc}): the next run reads every photo"]
    return []

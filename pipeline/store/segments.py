"""Segment files: immutable HDF5 files of feature rows that a segmented feature file's manifest points into.

A segment lives in ``<file>.segments/`` and is never changed once renamed into place. Its rows sit in one group
(``/`` for segments a commit wrote, ``train``/``val``/``test`` for an earlier whole feature file linked in as a
segment): ``<group>/features``, ``<group>/sha256`` and ``<group>/view``, one row each.
"""

from __future__ import annotations

import os
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from ..errors import PipelineError
from .layout import SEGMENT_NAME, SHA, Key, kind_ok, plain, stored

SUFFIX = ".segments"


def folder(path: Path) -> Path:
    """The folder holding the segments of the feature file ``path``."""
    return path.with_name(path.name + SUFFIX)


def new_name() -> str:
    return f"seg-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.h5"


@dataclass
class Segment:
    """One group of rows in an open segment file (``name`` None: the feature file itself, a whole file)."""

    name: str | None
    group: str
    features: h5py.Dataset

    @property
    def rows(self) -> int:
        return self.features.shape[0]


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def own_folder(directory: Path) -> Path:
    """``directory``, created if needed; refused when it is a link or not a folder: nothing is written through
    a link."""
    directory.mkdir(exist_ok=True)
    if not stat.S_ISDIR(os.lstat(directory).st_mode):
        raise PipelineError(f"{directory} is not a plain folder (a link?); move it away and rerun")
    return directory


def write(directory: Path, keys: list[Key], fetch: Callable[[int, int], np.ndarray], shape: tuple, dtype: str,
          fingerprint: str, block_rows: int) -> str:
    """A new segment of ``keys`` in ``directory``, features read by ``fetch(start, stop)`` block by block;
    written under a temporary name, fsynced, then renamed into place. Returns its file name."""
    own_folder(directory)
    name = new_name()
    tmp = directory / f".{name}.tmp"
    row_bytes = 4 * int(np.prod(shape))
    chunk = max(1, min(block_rows, len(keys), 2**20 // max(row_bytes, 1)))
    with h5py.File(tmp, "w", locking=False) as f:
        f.attrs["fingerprint"] = fingerprint
        f["sha256"] = np.array([k[0] for k in keys], dtype=SHA)
        f["view"] = np.array([k[1] for k in keys], dtype=np.int32)
        feats = f.create_dataset("features", shape=(len(keys), *shape), dtype=dtype, chunks=(chunk, *shape))
        for start in range(0, len(keys), block_rows):
            stop = min(start + block_rows, len(keys))
            feats[start:stop] = fetch(start, stop).astype(dtype, copy=False)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, directory / name)
    return name


def link(source: Path, directory: Path) -> str:
    """``source`` (an immutable published whole file) under a new segment name in ``directory``: a hard link,
    or a copy where the file system has none. Returns the name."""
    own_folder(directory)
    name = new_name()
    try:
        os.link(source, directory / name)
    except OSError:
        import shutil

        tmp = directory / f".{name}.tmp"
        shutil.copyfile(source, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, directory / name)
    return name


def open_file(directory: Path, name: str) -> h5py.File:
    """Open a segment file named by a manifest, refusing names, folders and files that are links or lead
    elsewhere. Raises FileNotFoundError when it is gone, ValueError when it is refused."""
    if not SEGMENT_NAME.fullmatch(name):
        raise ValueError(f"segment name {name!r} is not one this version writes")
    if not stat.S_ISDIR(os.lstat(directory).st_mode):
        raise ValueError(f"{directory.name} is not a plain folder (a link?)")
    if not stat.S_ISREG(os.lstat(directory / name).st_mode):
        raise ValueError(f"segment {name} is not a plain file (a link?)")
    try:
        return h5py.File(directory / name, "r", locking=False)
    except OSError:
        raise ValueError(f"segment {name} is not a readable HDF5 file") from None


def problem(f: h5py.File, group: str, rows: int) -> str:
    """What keeps ``group`` of the segment file ``f`` from holding ``rows`` rows ('' when nothing does):
    hard links only, plain stored columns of the right kinds and length."""
    links: list[str] = []
    f.visititems_links(lambda name, link: links.append(name) if not isinstance(link, h5py.HardLink) else None)
    if links:
        return f"it links to other files or paths ({links[0]})"
    g = f.get(group)
    if not isinstance(g, h5py.Group):
        return f"it has no group {group}"
    for name, kind in (("features", "f"), ("sha256", "str"), ("view", "iu")):
        ds = g.get(name)
        if not (plain(ds) and kind_ok(ds, kind) and stored(ds)):
            return f"{group}/{name} is missing, stored elsewhere, or of the wrong type"
        if ds.shape[0] != rows:
            return f"{group}/{name} has {ds.shape[0]} rows, the manifest says {rows}"
    return ""


def collect_garbage(directory: Path, keep: set[str]) -> None:
    """Delete every file in ``directory`` not in ``keep`` (segments of no published version, leftovers of a
    killed commit), and the folder once it is empty. Only the writer, holding the lock, calls this."""
    try:
        if not stat.S_ISDIR(os.lstat(directory).st_mode):
            return
    except FileNotFoundError:
        return
    for entry in os.scandir(directory):
        if entry.name not in keep and (entry.is_file(follow_symlinks=False) or entry.is_symlink()):
            os.unlink(entry.path)
    if not keep:
        try:
            directory.rmdir()
        except OSError:
            pass

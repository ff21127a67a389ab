"""The feature file's layout and its checks: columns, attributes, and what a file must be to be trusted."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import h5py
import numpy as np

from ..config import FORMAT_VERSION, POOLINGS, PRECISIONS, PREPROCESSINGS, RUNTIMES, STORE_DTYPES
from ..datasets import paths_problem

STR = h5py.string_dtype("utf-8")
SHA = h5py.string_dtype("ascii", 64)
CHUNK_ROWS = 512
Key = tuple[str, int]  # (sha256, view)
SEGMENTED = 2  # the ``layout_version`` of a manifest whose rows live in segment files (absent: a whole file)
SEGMENT_NAME = re.compile(r"seg-[0-9]{20}-[0-9a-f]{8}\.h5")
SEGMENT_GROUPS = ("/", "train", "val", "test")


@dataclass(frozen=True, init=False)
class Row:
    """One output row: an image (or one augmented view of it) and where its features come from."""

    path: str
    label: int
    sha256: str
    view: int = 0

    def __init__(self, path: str, label: int, sha256: str, view: int = 0):
        # one C call instead of a frozen __setattr__ per field: a rerun makes a row per photo and looks its key up
        # several times, so the key (sha256, view) is made once here
        self.__dict__.update(path=path, label=label, sha256=sha256, view=view, key=(sha256, view))

    key: ClassVar[Key]  # (sha256, view): declared here for type checkers, held by each row (set by __init__)


COLUMNS = {"features": "f", "labels": "iu", "view": "iu", "paths": "str", "sha256": "str"}
ROW_COLUMNS = {"labels": "iu", "view": "iu", "paths": "str", "sha256": "str", "segment": "iu", "row": "iu"}
HEX = frozenset("0123456789abcdef")


def kind_ok(ds: h5py.Dataset, kind: str) -> bool:
    """Whether ``ds`` has the dtype and rank of a column of ``kind`` (``COLUMNS``' values)."""
    if kind == "str":
        return ds.ndim == 1 and h5py.check_string_dtype(ds.dtype) is not None
    if kind == "f":
        return ds.dtype.kind == "f" and ds.ndim >= 2
    return ds.dtype.kind in kind and ds.ndim == 1


def plain(ds) -> bool:
    """A dataset stored in this file, not elsewhere (external storage, a virtual dataset)."""
    return isinstance(ds, h5py.Dataset) and not ds.external and not ds.is_virtual


def stored(ds: h5py.Dataset) -> bool:
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
    return runtimes_problem(attrs)


def runtimes_problem(attrs) -> str:
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


class Columns:
    """The row columns of an open feature file, each read from disk once and handed out read-only (a rerun's
    checks, reuse and stat index all look at the same 100k paths and hashes; decoding them is the costly part)."""

    def __init__(self, f: h5py.File):
        self._f, self._read = f, {}

    def __call__(self, split: str, name: str) -> np.ndarray:
        if (split, name) not in self._read:
            ds = self._f[split][name]
            values = ds.asstr()[()] if ds.dtype.kind in "OS" else ds[()]
            values.flags.writeable = False
            self._read[(split, name)] = values
        return self._read[(split, name)]


def segmented(f: h5py.File) -> bool:
    """Whether ``f`` is a manifest whose rows live in segment files (else the file holds its features)."""
    return "layout_version" in f.attrs


def segments_problem(f: h5py.File) -> str:
    """What is wrong with a manifest's /segments table ('' when nothing is): file names this version writes,
    groups of a segment file, row counts of 0 or more, all three columns of one length."""
    version = f.attrs["layout_version"]
    if not (np.ndim(version) == 0 and np.issubdtype(np.asarray(version).dtype, np.integer)
            and int(version) == SEGMENTED):
        return f"it has layout_version {version!r}; this version reads {SEGMENTED} (segmented) or none (whole)"
    g = f.get("segments")
    columns = [g.get(c) if isinstance(g, h5py.Group) else None for c in ("file", "group", "rows")]
    if not (all(plain(ds) and stored(ds) for ds in columns) and kind_ok(columns[0], "str")
            and kind_ok(columns[1], "str") and kind_ok(columns[2], "iu")
            and len({ds.shape[0] for ds in columns}) == 1):
        return "/segments is not three columns of one length (file, group, rows)"
    names, groups, rows = columns[0].asstr()[()], columns[1].asstr()[()], columns[2][()]
    bad = next((n for n in names if not SEGMENT_NAME.fullmatch(n)), None)
    if bad is not None:
        return f"/segments/file names {bad!r}, not a segment file beside it"
    if not set(groups) <= set(SEGMENT_GROUPS) or len(set(zip(names, groups))) != len(names):
        return "/segments/group names groups twice or groups a segment file does not have"
    if len(rows) and rows.min() < 0:
        return "/segments/rows holds negative counts"
    return ""


def rows_problem(f: h5py.File, split: str, columns: Columns) -> str:
    """What is wrong with where a segmented split's rows live ('' when nothing is): inside /segments."""
    rows = f["segments/rows"][()]
    segment, row = columns(split, "segment"), columns(split, "row")
    if not len(segment):
        return ""
    if segment.min() < 0 or segment.max() >= len(rows):
        return f"/{split}/segment points outside /segments"
    if row.min() < 0 or (row >= rows[segment]).any():
        return f"/{split}/row points past the end of its segment"
    return ""


def layout_problem(f: h5py.File, columns: Columns | None = None) -> str:
    """What keeps ``f`` from being a feature file this version can read ('' when nothing does); the row columns
    are read through ``columns`` (a reader keeps them for what it reads next).

    Only plain numbers and strings in the documented layout pass: no links to other files, no external
    or virtual storage, no opaque or object data (nothing a reader could be tricked into running), no more
    rows declared than stored, labels inside /classes, views of 0 or more, and image paths that stay inside
    the dataset root.
    """
    columns = columns or Columns(f)
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
    if not (plain(f["classes"]) and kind_ok(f["classes"], "str") and stored(f["classes"])):
        return "/classes is not a list of strings"
    kinds = ROW_COLUMNS if segmented(f) else COLUMNS
    if segmented(f) and segments_problem(f):
        return segments_problem(f)
    for split in ("train", "val", "test"):
        if split not in f:
            continue
        g = f[split]
        if not isinstance(g, h5py.Group):
            return f"/{split} is not a group"
        lengths = set()
        for name, kind in kinds.items():
            ds = g.get(name)
            if not (plain(ds) and kind_ok(ds, kind)):
                return f"/{split}/{name} is missing or has the wrong type or shape"
            if not stored(ds):
                return f"/{split}/{name} declares {ds.shape[0]} rows but the file does not hold them"
            lengths.add(ds.shape[0])
        if len(lengths) != 1:
            return f"the columns of /{split} have different lengths"
        labels = columns(split, "labels")
        if len(labels) and not (0 <= labels.min() and labels.max() < f["classes"].shape[0]):
            return f"/{split}/labels point outside /classes"
        views = columns(split, "view")
        if len(views) and views.min() < 0:
            return f"/{split}/view holds negative values"
        if segmented(f) and rows_problem(f, split, columns):
            return rows_problem(f, split, columns)
        bad = paths_problem(columns(split, "paths"))
        if bad:
            return f"/{split}/paths: {bad}"
    errors = f.get("errors")
    if errors is not None:
        listed = [errors.get(c) if isinstance(errors, h5py.Group) else None for c in ("path", "sha256", "reason")]
        if not all(plain(ds) and kind_ok(ds, "str") and stored(ds) for ds in listed) \
                or len({ds.shape[0] for ds in listed}) != 1:
            return "/errors is not three string columns of one length (path, sha256, reason)"
    return ""

"""Scan a dataset root into a manifest: split, class, relative path, stat data, sha256; byte-identical groups.

A root holds split folders (``train/``, ``val/`` or ``validation/``, ``test/``), each with
one folder per class, or class folders directly (one ``train`` split, from which
``val_fraction`` / ``test_fraction`` are carved by a stable hash of each relative path). A ``_removed/``
folder at the root (photos a reviewed fix list took out, see ``audit/fixes.py``) is ignored.
"""

from __future__ import annotations

import errno
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, NamedTuple, Sequence

from .errors import PipelineError
from .hashing import file_sha256, stable_fraction

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"})
SPLIT_DIRS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
SPLITS = ("train", "val", "test")
REMOVED_DIR = "_removed"  # where `transfer relabel` puts photos taken out of the dataset; never scanned


class FileStat(NamedTuple):
    """The stat data that tells a file changed without reading it (see :mod:`pipeline.statindex`)."""

    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, st: os.stat_result) -> "FileStat":
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@dataclass(frozen=True, init=False)
class Entry:
    """One image file of the dataset."""

    split: str
    label: str
    path: str  # relative to the root, '/' separated
    sha256: str = ""
    stat: FileStat | None = field(default=None, compare=False)  # taken by the scan, before any read

    def __init__(self, split: str, label: str, path: str, sha256: str = "", stat: FileStat | None = None):
        # one C call instead of a frozen __setattr__ per field: a rerun makes two entries per photo
        self.__dict__.update(split=split, label=label, path=path, sha256=sha256, stat=stat)

    def as_dict(self) -> dict:
        return {"path": self.path, "split": self.split, "class": self.label}

    def hashed(self, sha256: str) -> "Entry":
        return Entry(self.split, self.label, self.path, sha256, self.stat)


@dataclass
class Manifest:
    """Every image of a root, plus the files that could not even be read from disk."""

    root: Path
    classes: list[str]
    entries: list[Entry]
    skipped: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[Entry]:
        return [e for e in self.entries if e.split == name]

    @property
    def splits(self) -> list[str]:
        present = {e.split for e in self.entries}
        return [s for s in SPLITS if s in present]


def path_problem(path: str) -> str:
    """Why a recorded image path (a feature file's, a CSV's) could lead outside the dataset root ('' if not)."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or "\x00" in path or any(p in ("", ".", "..") for p in parts):
        return f"{path!r} is not a plain path inside the dataset root"
    return ""


def paths_problem(paths: Sequence[str]) -> str:
    """:func:`path_problem` of a whole column ('' when every path is plain and inside the root), checked on the
    column joined by NUL (which no path may hold): a few scans of one string, not a call per path."""
    if not len(paths):
        return ""
    text = "\0".join(paths)
    framed = "/" + text.replace("\0", "/\0/") + "/"
    if text.count("\0") != len(paths) - 1 or "\\" in text or any(bad in framed for bad in ("//", "/./", "/../")):
        return next(filter(None, map(path_problem, paths)), "")
    return ""


def _has_image_extension(name: str) -> bool:
    """Whether ``os.path.splitext(name)[1]`` is an image extension (leading dots are not one), without its cost:
    this runs once per file of a folder of a million photos."""
    stem = name.lstrip(".")
    return stem[stem.rfind("."):].lower() in IMAGE_EXTENSIONS if "." in stem else False


def is_image(name: str) -> bool:
    return not name.startswith(".") and _has_image_extension(name)


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.name != REMOVED_DIR and p.is_dir())


Listings = dict[str, tuple[list[str], list[tuple[str, bool]]]]  # folder -> its subfolders, its files (sorted)


def _listing(top: str, onerror: Callable[[OSError], None], follow_links: bool,
             listed: Listings) -> Iterator[tuple[str, list[str], list[tuple[str, bool]]]]:
    """``os.walk(top, onerror=onerror, followlinks=follow_links)`` (top-down: callers may prune ``dirnames``), but
    each file comes as ``(name, is_link)``, read from the folder listing (no ``lstat`` per file), files sorted by
    name. Folders already in ``listed`` are not listed again (a scan walks its class folders twice)."""
    if top in listed:
        dirnames = list(listed[top][0])
        yield top, dirnames, listed[top][1]
        yield from _subfolders(top, dirnames, onerror, follow_links, listed)  # those the caller left in dirnames
        return
    try:
        entries = os.scandir(top)
    except OSError as exc:
        onerror(exc)
        return
    dirnames, files = [], []
    with entries:
        while True:
            try:
                entry = next(entries)
            except StopIteration:
                break
            except OSError as exc:
                onerror(exc)
                return
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                dirnames.append(entry.name)
                continue
            try:
                files.append((entry.name, entry.is_symlink()))
            except OSError:  # gone since the listing: _file_stat says so
                files.append((entry.name, False))
    files.sort()
    listed[top] = (list(dirnames), files)
    yield top, dirnames, files
    yield from _subfolders(top, dirnames, onerror, follow_links, listed)


def _subfolders(top: str, dirnames: list[str], onerror: Callable[[OSError], None], follow_links: bool,
                listed: Listings) -> Iterator[tuple[str, list[str], list[tuple[str, bool]]]]:
    """:func:`_listing` of each of ``dirnames`` under ``top``, in order (linked folders only with ``follow_links``)."""
    for name in dirnames:
        path = os.path.join(top, name)
        if follow_links or not os.path.islink(path):
            yield from _listing(path, onerror, follow_links, listed)


def _walk(top: Path, problems: dict[Path, str], unfollowed: set[Path], hidden: bool = False,
          follow_links: bool = False, known: frozenset[str] | set[str] = frozenset(),
          listed: Listings | None = None) -> list[tuple[str, str, str]]:
    """Files with an image extension under ``top`` (with ``hidden``: also in and under names starting
    with '.'), recursively, each as ``(path, path relative to top with '/', real path)``: plain strings, as a
    folder of a million photos is cheaper without a ``Path`` per file. Files whose real path is in ``known``
    are left out. Linked files are read; linked folders are walked only with ``follow_links`` (never in loops),
    else they go to ``unfollowed``; folders that cannot be listed go to ``problems``; folders in ``listed`` are
    not listed again (and those listed now are added to it)."""
    found, seen, top_text = [], set(), os.fspath(top)

    def failed(exc: OSError) -> None:
        problems[Path(exc.filename)] = f"cannot list this folder: {exc.strerror or exc}"

    def loops(dirpath: str, real: str, name: str) -> bool:
        target = os.path.realpath(os.path.join(dirpath, name))
        if os.path.islink(os.path.join(dirpath, name)) and (real + os.sep).startswith(target + os.sep):
            problems[Path(dirpath, name)] = "symbolic link loop: the folder link points to a folder that contains it"
            return True
        return False

    for dirpath, dirnames, files in _listing(top_text, failed, follow_links, {} if listed is None else listed):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if hidden or not d.startswith("."))
        if follow_links:
            dirnames[:] = [d for d in dirnames if not loops(dirpath, real, d)]
        else:
            unfollowed.update(Path(dirpath, d) for d in dirnames if os.path.islink(os.path.join(dirpath, d)))
        inside = dirpath[len(top_text):].lstrip(os.sep).replace(os.sep, "/")
        folder, real_folder = os.path.join(dirpath, ""), os.path.join(real, "")
        for f, is_link in files:
            if real_folder + f not in known and (is_image(f) or (hidden and _has_image_extension(f))):
                file = folder + f  # its real path is its folder's unless it is a link itself
                found.append((file, f"{inside}/{f}" if inside else f,
                              os.path.realpath(file) if is_link else real_folder + f))
    return found


def _file_stat(file: str) -> FileStat | str:
    """The stat data of a readable, non-empty regular file (through links), or why it cannot be used."""
    try:
        st = os.stat(file)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop: the link points back to itself"
        if os.path.islink(file):
            return f"broken symbolic link: its target {os.readlink(file)} does not exist"
        return f"cannot read file: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a pipe, socket or device)"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    return FileStat(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)  # FileStat.of, inlined: once a photo


def _utf8(name: str) -> bool:
    """Whether a file name decoded from the disk can be stored (HDF5 and JSON want valid UTF-8)."""
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _printable(rel: str) -> str:
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _why_not_used(rel: str, layout: dict[str, Path] | None) -> str:
    """Why a file with an image extension is not used (``layout`` None: class folders at the root)."""
    parts = rel.split("/")
    if not _utf8(rel):
        return "its name or its folder's is not valid UTF-8 (old zip files do this); rename it"
    if any(p.startswith(".") for p in parts):
        return "hidden (its name or a folder's starts with '.'); rename it to include it"
    if layout is not None and len(parts) > 1 and parts[0] not in {d.name for d in layout.values()}:
        return f"folder {parts[0]}/ is not a split folder (train, val, validation or test)"
    return "not inside a class folder"


def _split_layout(root: Path) -> dict[str, Path]:
    layout: dict[str, Path] = {}
    for d in _subdirs(root):
        split = SPLIT_DIRS.get(d.name.lower())
        if split is None:
            continue
        if split in layout:
            raise PipelineError(f"{root} has both {layout[split].name}/ and {d.name}/: keep one of them")
        layout[split] = d
    return layout


def _carve(relpath: str, val_fraction: float, test_fraction: float) -> str:
    u = stable_fraction(relpath)
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def scan(root: str | os.PathLike, val_fraction: float = 0.0, test_fraction: float = 0.0,
         follow_links: bool = False) -> Manifest:
    """List the images under ``root`` by split and class (no hashing yet).

    As Keras's directory readers do, linked files and linked class folders are read, but links to folders
    inside a class folder are not followed unless ``follow_links`` (a link to ``/`` would pull the whole
    machine into one class); a warning names what was not followed.

    Examples
    --------
    >>> m = scan("data/flowers", val_fraction=0.2)   # doctest: +SKIP
    >>> m.classes, len(m.split("val"))                # doctest: +SKIP
    """
    root = Path(root)
    if not _utf8(str(root.resolve())):
        raise PipelineError(f"the path of {_printable(str(root))} is not valid UTF-8; rename the folder")
    if not root.is_dir():
        raise PipelineError(f"data directory not found: {root} (pass a folder of class folders or train/val/test folders)")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise PipelineError("--val-fraction and --test-fraction must be in [0, 1) and sum to less than 1")
    layout = _split_layout(root)
    carving = not layout
    if carving:
        layout = {"train": root}
    elif val_fraction or test_fraction:
        raise PipelineError(f"{root} already has split folders; drop --val-fraction/--test-fraction")

    entries: list[Entry] = []
    skipped: list[dict] = []
    per_split: dict[str, set[str]] = {}
    problems: dict[Path, str] = {}
    unfollowed: set[Path] = set()
    accounted: set[str] = set()
    listed: Listings = {}
    for split, split_dir in layout.items():
        per_split[split] = set()
        for class_dir in _subdirs(split_dir):
            if not _utf8(class_dir.name):
                continue  # its files are reported below, with the reason
            label = class_dir.name
            per_split[split].add(label)
            prefix = class_dir.relative_to(root).as_posix() + "/"
            for file, inside, real in _walk(class_dir, problems, unfollowed, follow_links=follow_links, listed=listed):
                rel = prefix + inside
                if not (rel.isascii() or _utf8(rel)):
                    continue
                accounted.add(real)
                found = _file_stat(file)
                if isinstance(found, str):
                    skipped.append({"path": rel, "reason": found})
                    continue
                target = _carve(rel, val_fraction, test_fraction) if carving else split
                entries.append(Entry(target, label, rel, stat=found))
    others = _walk(root, problems, set(), hidden=True, known=accounted, listed=listed)
    for _, rel, real in others:  # every other image file, and why
        if real not in accounted and rel.split("/", 1)[0] != REMOVED_DIR:
            skipped.append({"path": _printable(rel), "reason": _why_not_used(rel, None if carving else layout)})
    skipped += [{"path": _printable(d.relative_to(root).as_posix()) + "/", "reason": why} for d, why in problems.items()]
    classes = sorted(set().union(*per_split.values())) if per_split else []
    if not classes:
        raise PipelineError(f"no class folders found in {root}: expected {root}/<class>/*.jpg or {root}/train/<class>/*.jpg")
    if not entries:
        found = f"; {len(skipped)} unusable, e.g. {skipped[0]['path']}: {skipped[0]['reason']}" if skipped else ""
        raise PipelineError(f"no image files found in the class folders of {root}{found}")
    if carving and (val_fraction or test_fraction) and not any(e.split == "train" for e in entries):
        raise PipelineError(f"--val-fraction {val_fraction} and --test-fraction {test_fraction} leave no train "
                            f"images of the {len(entries)} in {root}; use smaller fractions")
    counts = {(e.split, e.label) for e in entries}
    warnings = []
    if unfollowed:
        example = sorted(unfollowed)[0]
        warnings.append(f"{len(unfollowed)} linked folder(s) inside class folders not followed, e.g. "
                        f"{_printable(example.relative_to(root).as_posix())} -> {_printable(os.readlink(example))}; "
                        "pass --follow-links to read them")
    for split in layout if not carving else sorted({e.split for e in entries}):
        for label in classes:
            if not carving and label not in per_split[split]:
                warnings.append(f"split {split} has no folder for class {label}")
            elif (split, label) not in counts:
                warnings.append(f"class {label} has no images in split {split}")
    return Manifest(root, classes, entries, skipped, warnings)


def hash_files(manifest: Manifest, workers: int = 8, known: Mapping[str, str] | None = None) -> Manifest:
    """Fill in each entry's sha256 (threads: hashlib releases the GIL); unreadable files are skipped.

    A path in ``known`` keeps the sha256 given there and its file is not read (see :mod:`pipeline.statindex`).
    """
    known = known or {}

    def one(entry: Entry) -> Entry | dict:
        try:
            return entry.hashed(file_sha256(manifest.root / entry.path))
        except OSError as exc:
            return {"path": entry.path, "reason": f"cannot read file: {exc.strerror or exc}"}

    unknown = [e for e in manifest.entries if e.path not in known]
    with ThreadPoolExecutor(workers) as pool:
        read = iter(pool.map(one, unknown))
    results = [e.hashed(known[e.path]) if e.path in known else next(read) for e in manifest.entries]
    entries = [r for r in results if isinstance(r, Entry)]
    skipped = manifest.skipped + [r for r in results if isinstance(r, dict)]
    return Manifest(manifest.root, manifest.classes, entries, skipped, manifest.warnings)

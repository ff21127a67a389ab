"""Scan a dataset root into a manifest: split, class, relative path, size, sha256.

A root holds split folders (``train/``, ``val/`` or ``validation/``, ``test/``), each with
one folder per class, or class folders directly (one ``train`` split, from which
``val_fraction`` / ``test_fraction`` are carved by a stable hash of each relative path).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PipelineError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"})
SPLIT_DIRS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Entry:
    """One image file of the dataset."""

    split: str
    label: str
    path: str  # relative to the root, '/' separated
    size: int
    sha256: str = ""


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


def is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def stable_fraction(relpath: str) -> float:
    """A number in [0, 1) that depends only on the relative path (same on every machine)."""
    digest = hashlib.sha1(relpath.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.is_dir())


def _walk_images(class_dir: Path) -> list[Path]:
    """Image files under a class folder, recursively, following symlinks without looping."""
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath, f) for f in sorted(filenames) if is_image(f)]
    return found


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


def scan(root: str | os.PathLike, val_fraction: float = 0.0, test_fraction: float = 0.0) -> Manifest:
    """List the images under ``root`` by split and class (no hashing yet).

    Examples
    --------
    >>> m = scan("data/flowers", val_fraction=0.2)   # doctest: +SKIP
    >>> m.classes, len(m.split("val"))                # doctest: +SKIP
    """
    root = Path(root)
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
    for split, split_dir in layout.items():
        per_split[split] = set()
        for class_dir in _subdirs(split_dir):
            per_split[split].add(class_dir.name)
            for file in _walk_images(class_dir):
                rel = file.relative_to(root).as_posix()
                try:
                    size = file.stat().st_size
                except OSError as exc:
                    skipped.append({"path": rel, "reason": f"cannot read file: {exc.strerror or exc}"})
                    continue
                target = _carve(rel, val_fraction, test_fraction) if carving else split
                entries.append(Entry(target, class_dir.name, rel, size))
    classes = sorted(set().union(*per_split.values())) if per_split else []
    if not classes:
        raise PipelineError(f"no class folders found in {root}: expected {root}/<class>/*.jpg or {root}/train/<class>/*.jpg")
    counts = {(e.split, e.label) for e in entries}
    warnings = []
    for split in layout if not carving else sorted({e.split for e in entries}):
        for label in classes:
            if not carving and label not in per_split[split]:
                warnings.append(f"split {split} has no folder for class {label}")
            elif (split, label) not in counts:
                warnings.append(f"class {label} has no images in split {split}")
    return Manifest(root, classes, entries, skipped, warnings)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def hash_files(manifest: Manifest, workers: int = 8) -> Manifest:
    """Fill in each entry's sha256 (threads: hashlib releases the GIL); unreadable files are skipped."""

    def one(entry: Entry) -> Entry | dict:
        try:
            return Entry(entry.split, entry.label, entry.path, entry.size, _sha256(manifest.root / entry.path))
        except OSError as exc:
            return {"path": entry.path, "reason": f"cannot read file: {exc.strerror or exc}"}

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, manifest.entries))
    entries = [r for r in results if isinstance(r, Entry)]
    skipped = manifest.skipped + [r for r in results if isinstance(r, dict)]
    return Manifest(manifest.root, manifest.classes, entries, skipped, manifest.warnings)

"""The saved audit: what :func:`~pipeline.audit.audit_cache` found in a feature file, kept so that the next audit
of the same version with the same settings (``transfer report`` of a run, most often) reads it back instead of
searching again.

``<cache_dir>/audits/<dataset>/<feature file name>.json`` holds ``{"format_version", "key", "result"}``: the
result is ``audit_cache``'s from ``"threshold"`` on, with every finding of each image kind (every image of the
searched splits with its outlier score, every flagged label issue), so that ``top`` and ``min_score`` choose what
is listed after it is read; the key is what it is valid for: the feature file's stat data (a commit replaces the
file, so every new version has another inode and ctime), the settings that change the findings (``threshold``,
``include_test``), the table of finding kinds, and the versions of this package and of the libraries the audit
computes with.

A saved result is an accelerator, never trusted blindly: one that is not a regular JSON file, has values of the
wrong type, or images that the feature file does not hold (or holds in another split or class) is ignored with
a note, and the audit runs and replaces it; one of another key is replaced silently. It is written whole
(:mod:`pipeline.atomic`), never through a link.
"""

from __future__ import annotations

import json
import math
import os
import stat
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..atomic import write_text
from ..errors import PipelineError
from .kinds import FINDINGS, GroupKind

if TYPE_CHECKING:
    from ..store import FeatureFile

FORMAT_VERSION = 1
FOLDER = "audits"
LIBRARIES = ("numpy", "scikit-learn", "cleanlab", "faiss-cpu")  # whose versions can change what the audit finds
Images = Mapping[str, tuple[str, str]]  # path of every image (view 0) in the feature file -> (split, class)


def location(feature_file: str | os.PathLike) -> Path:
    """Where the saved audit of ``<cache_dir>/<dataset>/<name>`` lives: ``<cache_dir>/audits/<dataset>/<name>.json``."""
    feature_file = Path(feature_file)
    return feature_file.parent.parent / FOLDER / feature_file.parent.name / f"{feature_file.name}.json"


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def key_of(feature_file: str | os.PathLike, **settings: Any) -> dict | None:
    """What a saved result must have been computed for: this version of ``feature_file`` (its stat data, taken
    before it is read: a version committed meanwhile has another key), these ``settings``, this table of kinds and
    these versions. None when the file cannot be stat'ed."""
    from .. import __version__

    try:
        info = os.stat(feature_file)
    except OSError:
        return None
    return {"feature_file": {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "ctime_ns": info.st_ctime_ns,
                             "inode": info.st_ino},
            "settings": settings, "kinds": list(FINDINGS), "pipeline": __version__,
            "libraries": {name: _version(name) for name in LIBRARIES}}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _image_problem(x: Any, images: Images, extra: set[str]) -> str:
    """Why ``x`` is not an image of the feature file (``{"path", "split", "class"}`` plus the ``extra`` keys)."""
    if not (isinstance(x, dict) and set(x) == {"path", "split", "class"} | extra):
        return "a finding has other keys than an image's"
    if not (isinstance(x["path"], str) and images.get(x["path"]) == (x["split"], x["class"])):
        return f"{str(x['path'])[:200]!r} is not an image of the feature file in that split and class"
    return ""


def _group_problem(group: Any, images: Images) -> str:
    if not (isinstance(group, list) and len(group) > 1):
        return "a group of copies is not a list of two or more images"
    for x in group:
        extra = {"similarity"} if isinstance(x, dict) and "similarity" in x else set()
        if problem := _image_problem(x, images, extra) or ("" if not extra or _number(x["similarity"])
                                                           else "a similarity is not a number"):
            return problem
    return ""


def _listed_problem(x: Any, images: Images, classes: list[str], splits: list[str]) -> str:
    if problem := _image_problem(x, images, {"suggested", "score"}):
        return problem
    if x["split"] not in splits:
        return f"{x['path'][:200]!r} is listed though its split was not searched"
    if not (x["suggested"] is None or x["suggested"] in classes) or not _number(x["score"]):
        return "a suggested class or a score is not one"
    return ""


def result_problem(result: Any, images: Images, classes: list[str], threshold: float, scope: tuple[str, ...]) -> str:
    """Why ``result`` is not an audit, at ``threshold`` and searched in ``scope``, of the feature file whose
    images (view 0) and classes are given ('' when it is one)."""
    expected = {"threshold", "images", "splits", *FINDINGS}
    if not (isinstance(result, dict) and set(result) == expected):
        return "its result has other keys than an audit's"
    if not (result["threshold"] == threshold and isinstance(result["images"], int) and result["images"] == len(images)):
        return "its threshold or image count is wrong"
    splits = result["splits"]
    if not (isinstance(splits, list) and all(isinstance(s, str) and s in scope for s in splits)):
        return "its searched splits are not splits"
    for name, kind in FINDINGS.items():
        found = result[name]
        if not isinstance(found, list):
            return f"its {kind.title} are not a list"
        for x in found:
            if problem := (_group_problem(x, images) if isinstance(kind, GroupKind)
                           else _listed_problem(x, images, classes, splits)):
                return problem
    return ""


def read(path: Path, key: dict | None, images: Images, classes: list[str],
         scope: tuple[str, ...]) -> tuple[dict | None, str]:
    """The saved result at ``path`` when it was computed for ``key`` and fits the feature file (see
    :func:`result_problem`); else ``(None, note)`` (no note when there is none, or it is of another key)."""
    if key is None:
        return None, ""
    try:
        saved = json.loads(_read_regular(path))
    except FileNotFoundError:
        return None, ""
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, _ignoring(path, f"it is not a readable JSON file: {exc}")
    if not (isinstance(saved, dict) and set(saved) == {"format_version", "key", "result"}):
        return None, _ignoring(path, "it is not a saved audit")
    if saved["format_version"] != FORMAT_VERSION or saved["key"] != key:
        return None, ""  # an audit of another version or settings: replaced by this one, silently
    if problem := result_problem(saved["result"], images, classes, key["settings"]["threshold"], scope):
        return None, _ignoring(path, problem)
    return saved["result"], ""


def _read_regular(path: Path) -> str:
    """The text of ``path`` if it is a regular file, not a link (nor a FIFO, which would block the read)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        return fh.read().decode("utf-8")


def images_of(f: FeatureFile) -> dict[str, tuple[str, str]]:
    """The images (view 0) of an open feature file: path -> (split, class), from its columns (no features read)."""
    classes, images = f.classes, {}
    for split in f.splits:
        keep = f.column(split, "view") == 0
        labels, paths = f.column(split, "labels")[keep], f.column(split, "paths")[keep]
        images.update((p, (split, classes[int(c)])) for p, c in zip(paths.tolist(), labels.tolist()))
    return images


def _ignoring(path: Path, why: str) -> str:
    return f"ignoring the saved audit {path} ({why}): the audit ran again and replaced it"


def save(path: Path, key: dict | None, result: Mapping[str, Any]) -> list[str]:
    """Write ``result`` for ``key`` at ``path``, replacing what was there; a note when it cannot be written: that
    costs the next audit a search, nothing else."""
    if key is None:
        return []
    try:
        write_text(path, json.dumps({"format_version": FORMAT_VERSION, "key": key, "result": result},
                                    allow_nan=False, separators=(",", ":")))
    except (OSError, ValueError, PipelineError) as exc:
        return [f"could not save the audit to {path} ({getattr(exc, 'strerror', None) or exc}): "
                "the next audit of this file searches again"]
    return []

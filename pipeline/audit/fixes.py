"""The fix loop: an audit's findings as a reviewable CSV, and applying the reviewed CSV to the photo folders.

``write_fix_list`` writes one row per label issue (action ``relabel`` to the suggested class) and per outlier
(action ``remove``); a person reviews it, setting ``action`` to ``keep`` where the finding is wrong or editing
``suggested``. ``apply_fixes`` validates every row before moving anything, then moves each file to its new
class folder (same split) or into ``_removed/`` at the dataset root, which the scan never reads, as one
transaction (:mod:`pipeline.audit.moving`). The cache is keyed by content, so the next ``extract`` follows the
moves without computing anything.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..atomic import writing
from ..datasets import REMOVED_DIR, _split_layout, _subdirs
from ..errors import PipelineError
from . import moving
from .kinds import image_kinds

COLUMNS = ("path", "split", "class", "suggested", "score", "finding", "action")
ACTIONS = ("relabel", "remove", "keep")


def refuse_existing(path: Path) -> None:
    """A :class:`PipelineError` when ``path`` exists (a link included): a fix list may hold a person's review."""
    if os.path.lexists(path):
        raise PipelineError(f"--fix-list {path} exists (reviewed already?); pass --force to replace it, or "
                            "another file name")


def write_fix_list(found: dict, path: str | os.PathLike, force: bool = False) -> Path:
    """Write the suspicious images of an audit result (label issues, outliers: each image kind, with its action)
    as a CSV to review; returns its path.

    An existing ``path`` is replaced (atomically, a link replaced rather than followed) only with ``force``.

    Examples
    --------
    >>> write_fix_list(audit_cache("cache/pets/mobilenet_v2-224-avg.h5"), "fixes.csv")   # doctest: +SKIP
    PosixPath('fixes.csv')
    """
    path = Path(path)
    if not force:
        refuse_existing(path)
    try:
        _write_rows(found, path, force)
    except FileExistsError:  # appeared while writing
        refuse_existing(path)
        raise
    return path


def _write_rows(found: dict, path: Path, replace: bool) -> None:
    with writing(path, replace=replace, newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        for kind in image_kinds():
            for x in found.get(kind.name, []):
                writer.writerow({**{k: x[k] for k in ("path", "split", "class", "score")},
                                 "suggested": x.get("suggested") or "", "finding": kind.one.replace(" ", "_"),
                                 "action": kind.action})


@dataclass(frozen=True)
class Move:
    """One reviewed row: move ``source`` to ``target`` (both relative to the dataset root)."""

    source: str
    target: str
    action: str


def _where(root: Path) -> tuple[int, dict[str, set[str]]]:
    """How deep class folders sit (1: under split folders, 0: at the root) and the classes of each split
    folder name ('' for class folders at the root)."""
    layout = _split_layout(root)
    if layout:
        return 1, {d.name: {c.name for c in _subdirs(d)} for d in layout.values()}
    return 0, {"": {c.name for c in _subdirs(root)}}


def _check_path(root: Path, text: str, problem) -> PurePosixPath:
    """The row's path as relative parts inside ``root``, or ``problem(...)`` saying why not."""
    if not text:
        raise problem("path", "is empty")
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or PureWindowsPath(text).drive:
        raise problem("path", f"{text!r} is absolute; paths are relative to the dataset root")
    rel = PurePosixPath(text)
    if ".." in rel.parts or "\\" in text:
        raise problem("path", f"{text!r} leaves the dataset root")
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(root / rel)]) != real_root:
        raise problem("path", f"{text!r} is a symbolic link leading outside the dataset root")
    if not (root / rel).is_file():
        raise problem("path", f"{text!r} is not a file under {root} (moved already? rerun the audit)")
    return rel


def _plan_row(root: Path, row: dict, depth: int, classes: dict[str, set[str]], problem) -> Move | None:
    action = (row.get("action") or "").strip().lower()
    if action not in ACTIONS:
        raise problem("action", f"{row.get('action')!r} is not one of {', '.join(ACTIONS)}")
    rel = _check_path(root, (row.get("path") or "").strip(), problem)
    if len(rel.parts) < depth + 2 or (depth and rel.parts[0] not in classes):
        raise problem("path", f"{str(rel)!r} is not inside a class folder")
    split_dir, current = (rel.parts[0] if depth else ""), rel.parts[depth]
    given = (row.get("class") or "").strip()
    if given and given != current:
        raise problem("class", f"the file is in class folder {current!r}, the list says {given!r} "
                               "(the folders changed since the audit; rerun it)")
    if action == "keep":
        return None
    if action == "remove":
        target = PurePosixPath(REMOVED_DIR, rel)
    else:
        wanted = (row.get("suggested") or "").strip()
        if wanted not in classes[split_dir] or wanted == current:
            known = ", ".join(sorted(classes[split_dir]))
            raise problem("suggested", f"{wanted!r} is not another class folder of {split_dir or 'the root'} "
                                       f"(classes: {known})")
        target = PurePosixPath(*rel.parts[:depth], wanted, *rel.parts[depth + 1:])
    if os.path.lexists(root / target):
        raise problem("path", f"{target} exists already; rename one of the two files (nothing is overwritten)")
    if why := moving.destination_problem(root, str(target)):
        raise problem("path", f"{target} would leave the dataset: {why}")
    return Move(str(rel), str(target), action)


def plan_fixes(data_dir: str | os.PathLike, fix_list: str | os.PathLike) -> list[Move]:
    """Validate every row of a reviewed fix list against ``data_dir``; the moves it asks for, in row order.

    Raises :class:`PipelineError` naming the file, the row (the header is row 1) and the field at the
    first row that cannot be applied safely.

    Examples
    --------
    >>> plan_fixes("data/pets", "fixes.csv")[0]   # doctest: +SKIP
    Move(source='train/cats/cat.17.jpg', target='train/dogs/cat.17.jpg', action='relabel')
    """
    root, fix_list = Path(data_dir), Path(fix_list)
    if not root.is_dir():
        raise PipelineError(f"data directory not found: {root}")
    if not fix_list.is_file():
        raise PipelineError(f"fix list not found: {fix_list} (write one with `transfer audit CACHE --fix-list FILE`)")
    depth, classes = _where(root)
    with open(fix_list, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("path", "action") if c not in (reader.fieldnames or [])]
        if missing:
            raise PipelineError(f"{fix_list}, row 1: no {missing[0]!r} column (expected {', '.join(COLUMNS)})")
        moves, sources, targets = [], set(), set()
        for number, row in enumerate(reader, start=2):
            def problem(field: str, why: str) -> PipelineError:
                return PipelineError(f"{fix_list}, row {number}, {field}: {why}; nothing was moved")

            move = _plan_row(root, row, depth, classes, problem)
            if move is None:
                continue
            if move.source in sources or move.target in targets:
                raise problem("path", f"{move.source} -> {move.target} clashes with an earlier row")
            sources.add(move.source)
            targets.add(move.target)
            moves.append(move)
    return moves


def apply_fixes(data_dir: str | os.PathLike, fix_list: str | os.PathLike, dry_run: bool = False) -> dict:
    """Apply a reviewed fix list to the photo folders: relabel rows move the file to the suggested class
    folder of its split, remove rows into ``_removed/``, keep rows change nothing.

    The whole list is validated first (:func:`plan_fixes`); ``dry_run`` stops there. The moves are one
    transaction (:mod:`pipeline.audit.moving`): all are made, or those made are undone, or a journal stays that
    rerunning the same list finishes (``resumed``). Returns ``{"data_dir", "fix_list", "dry_run", "resumed",
    "moved": [{"path", "to", "action"}]}``.

    Examples
    --------
    >>> apply_fixes("data/pets", "fixes.csv", dry_run=True)["moved"][0]   # doctest: +SKIP
    {'path': 'train/cats/cat.17.jpg', 'to': 'train/dogs/cat.17.jpg', 'action': 'relabel'}
    """
    root, fix_list = Path(data_dir), Path(fix_list)
    pending = moving.unfinished(root, fix_list) if root.is_dir() and fix_list.is_file() else None
    if pending is not None:
        if not dry_run:
            moving.finish(root, pending)
        moved = pending
    else:
        moved = [{"path": m.source, "to": m.target, "action": m.action} for m in plan_fixes(root, fix_list)]
        if not dry_run:
            moving.apply(root, fix_list, moved)
    return {"data_dir": str(root), "fix_list": str(fix_list), "dry_run": dry_run, "resumed": pending is not None,
            "moved": moved}

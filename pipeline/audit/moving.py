"""Moving photos inside a dataset as one transaction: every move or none, or a journal that a rerun finishes.

Before the first move, the whole list goes into a journal at the dataset root (:data:`JOURNAL`, written
atomically). A move that fails (a read-only or immutable folder, a full disk) undoes the moves made so far and
the journal goes; only when undoing fails too does the journal stay, and then the next ``apply`` of the same
fix list finishes the moves it names (a killed run is finished the same way). Every destination's folders
must lie inside the dataset, on its filesystem, and be no links.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

from ..atomic import write_text
from ..errors import PipelineError
from ..hashing import file_sha256

JOURNAL = ".transfer-relabel-journal.json"


def destination_problem(root: Path, target: str) -> str:
    """Why moving a file of ``root`` to ``target`` (relative) could put it outside the dataset ('' when it
    cannot): a folder on the way is a link, or on another filesystem than the dataset."""
    device = _device(root)
    folder = root
    for part in PurePosixPath(target).parts[:-1]:
        folder = folder / part
        if not os.path.lexists(folder):
            break
        if folder.is_symlink() or not folder.is_dir():
            return f"{folder.relative_to(root)} is a link or a file, not a folder of the dataset"
        if _device(folder) != device:
            return f"{folder.relative_to(root)} is on another filesystem than the dataset"
    return ""


def _device(path: Path) -> int:
    return os.stat(path).st_dev


def _record(root: Path, fix_list: Path, moves: list[dict]) -> Path:
    journal = root / JOURNAL
    write_text(journal, json.dumps({"fix_list": str(fix_list.resolve()), "fix_list_sha256": file_sha256(fix_list),
                                    "moves": moves}, indent=1), replace=False)
    return journal


def _move(root: Path, source: str, target: str) -> None:
    """One move inside ``root``, never over an existing file."""
    if problem := destination_problem(root, target):
        raise PipelineError(f"{target}: {problem}")
    (root / target).parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(root / target):
        raise PipelineError(f"{target} appeared while moving; stopped before overwriting it")
    os.rename(root / source, root / target)


def _undo(root: Path, done: list[dict]) -> None:
    for move in reversed(done):
        os.rename(root / move["to"], root / move["path"])


def apply(root: Path, fix_list: Path, moves: list[dict]) -> None:
    """Make ``moves`` (``{"path", "to", "action"}``, paths relative to ``root``) as one transaction (see the
    module)."""
    journal, done = _record(root, fix_list, moves), []
    source = target = ""
    try:
        for move in moves:
            source, target = move["path"], move["to"]
            _move(root, source, target)
            done.append(move)
    except (OSError, PipelineError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        try:
            _undo(root, done)
        except OSError as undo:
            raise PipelineError(f"moving {source} failed ({why}) after {len(done)} of {len(moves)} moves, and undoing "
                                f"them failed too ({undo.strerror or undo}); fix that and rerun the same command to "
                                f"finish (journal {journal})") from None
        journal.unlink()
        raise PipelineError(f"moving {source} -> {target} failed ({why}); the {len(done)} moves before it were "
                            "undone, nothing changed") from None
    journal.unlink()


def unfinished(root: Path, fix_list: Path) -> list[dict] | None:
    """The moves an interrupted :func:`apply` of ``fix_list`` recorded, or None when there is no journal; a
    journal of another fix list, or one naming paths outside the dataset, is refused."""
    journal = root / JOURNAL
    if not os.path.lexists(journal):
        return None
    try:
        record = json.loads(journal.read_text(encoding="utf-8"))
        moves = [{"path": str(m["path"]), "to": str(m["to"]), "action": str(m["action"])} for m in record["moves"]]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise PipelineError(f"{journal} is not a readable relabel journal; look at it, then delete it") from None
    if record.get("fix_list_sha256") != file_sha256(fix_list):
        raise PipelineError(f"an earlier relabel of {record.get('fix_list')} in {root} did not finish; rerun it with "
                            f"that fix list to finish it (journal {journal})")
    for path in (move[k] for move in moves for k in ("path", "to")):
        rel = PurePosixPath(path)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise PipelineError(f"{journal} names {path!r}, outside the dataset; look at it, then delete it")
    return moves


def finish(root: Path, moves: list[dict]) -> None:
    """Make the moves of a journal not made yet; the journal goes once all are."""
    for move in moves:
        if os.path.lexists(root / move["to"]) and not os.path.lexists(root / move["path"]):
            continue  # made before the interruption
        _move(root, move["path"], move["to"])
    (root / JOURNAL).unlink()

"""Files from others, round two: ``relabel`` is one transaction. It completes, or undoes what it moved, or
leaves a journal that rerunning the same list finishes; no destination lies outside the dataset."""

from __future__ import annotations

import csv
import errno
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import make_folder, refused
from pipeline.audit import moving
from pipeline.audit.fixes import COLUMNS
from pipeline.cli import main

ROWS = [{"path": "train/red/red0.png", "class": "red", "suggested": "blue", "action": "relabel"},
        {"path": "train/red/red1.png", "class": "red", "suggested": "", "action": "remove"},
        {"path": "val/blue/blue0.png", "class": "blue", "suggested": "red", "action": "relabel"}]


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def data(tmp_path) -> Path:
    return make_folder(tmp_path / "d", {"train": 3, "val": 2})


@pytest.fixture
def fixes(tmp_path) -> Path:
    path = tmp_path / "fixes.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        writer.writerows([{"split": r["path"].split("/")[0], "score": 0.9, "finding": "label_issue", **r} for r in ROWS])
    return path


def relabel(*args) -> object:
    return CliRunner().invoke(main, ["relabel", *map(str, args)])


def failing_second_move(monkeypatch) -> None:
    """The second move fails as on a read-only destination."""
    real, calls = moving._move, []

    def move(root, source, target):
        calls.append(source)
        if len(calls) == 2:
            raise OSError(errno.EROFS, "Read-only file system")
        real(root, source, target)

    monkeypatch.setattr(moving, "_move", move)


def test_a_removed_folder_linking_out_of_the_dataset_is_refused(data, fixes, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (data / "_removed").symlink_to(outside, target_is_directory=True)
    before = tree(data)
    refused(relabel(data, fixes), "row 3", "_removed", "leave the dataset")
    assert tree(data) == before and not any(outside.iterdir())


def test_a_class_folder_linking_out_of_the_dataset_is_refused(data, fixes, tmp_path):
    outside = make_folder(tmp_path / "outside", {"": 1})
    (data / "train" / "blue").rename(tmp_path / "blue-was-here")
    (data / "train" / "blue").symlink_to(outside / "blue", target_is_directory=True)
    refused(relabel(data, fixes), "row 2", "train/blue", "leave the dataset")
    assert sorted(p.name for p in (outside / "blue").iterdir()) == ["blue0.png"]


def test_a_removed_folder_on_another_filesystem_is_refused_before_anything_moves(data, fixes, monkeypatch):
    (data / "_removed").mkdir()
    real = moving._device
    monkeypatch.setattr(moving, "_device", lambda p: real(p) + (1 if p.name == "_removed" else 0))
    before = tree(data)
    refused(relabel(data, fixes), "row 3", "another filesystem")
    assert tree(data) == before


def test_a_move_that_fails_undoes_the_moves_before_it(data, fixes, monkeypatch):
    before = tree(data)
    failing_second_move(monkeypatch)
    error = refused(relabel(data, fixes), "Read-only file system", "undone", "nothing changed")
    assert "train/red/red1.png" in error
    assert tree(data) == before and not (data / moving.JOURNAL).exists()


def test_when_undoing_fails_too_a_rerun_of_the_same_list_finishes(data, fixes, monkeypatch):
    before = tree(data)
    failing_second_move(monkeypatch)
    monkeypatch.setattr(moving, "_undo", lambda root, done: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    refused(relabel(data, fixes), "1 of 3 moves", "rerun the same command", moving.JOURNAL)
    assert (data / "train/blue/red0.png").exists() and (data / moving.JOURNAL).exists()
    monkeypatch.undo()
    other = fixes.with_name("other.csv")
    other.write_text("path,action\n")
    refused(relabel(data, other), "did not finish", str(fixes.resolve()))
    done = relabel(data, fixes, "--json")
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["resumed"] is True and [m["to"] for m in result["moved"]] == [
        "train/blue/red0.png", "_removed/train/red/red1.png", "val/red/blue0.png"]
    after = tree(data)
    assert after["_removed/train/red/red1.png"] == before["train/red/red1.png"]
    assert after["val/red/blue0.png"] == before["val/blue/blue0.png"] and not (data / moving.JOURNAL).exists()
    assert sorted(after) == sorted(before.keys() - {r["path"] for r in ROWS} | {m["to"] for m in result["moved"]})


def test_a_journal_naming_paths_outside_the_dataset_is_refused(data, fixes):
    from pipeline.hashing import file_sha256

    (data / moving.JOURNAL).write_text(json.dumps({"fix_list_sha256": file_sha256(fixes), "moves": [
        {"path": "train/red/red0.png", "to": "../../stolen.png", "action": "remove"}]}))
    before = tree(data)
    refused(relabel(data, fixes), "outside the dataset")
    assert tree(data) == before

"""The fix loop's safety: a reviewed fix list moves files only inside the dataset, never overwrites, and a
list with any bad row changes nothing (one-line error naming the file, row and field, exit 2)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import make_folder

import pipeline
from pipeline.audit.fixes import COLUMNS, write_fix_list
from pipeline.cli import main
from pipeline.datasets import scan


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def fix_list(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        writer.writerows([{"split": "train", "score": 0.9, "finding": "label_issue", **r} for r in rows])
    return path


@pytest.fixture
def data(tmp_path) -> Path:
    return make_folder(tmp_path / "d", {"train": 3, "val": 2})


def relabel(*args: str):
    return CliRunner().invoke(main, ["relabel", *map(str, args)])


def test_relabel_moves_between_classes_and_into_removed(data, tmp_path):
    fixes = fix_list(tmp_path / "fixes.csv", [
        {"path": "train/red/red0.png", "class": "red", "suggested": "blue", "action": "relabel"},
        {"path": "val/blue/blue1.png", "class": "blue", "suggested": "", "action": "remove"},
        {"path": "train/red/red1.png", "class": "red", "suggested": "blue", "action": "keep"},
    ])
    before = tree(data)
    dry = relabel(data, fixes, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["moved"] == [
        {"path": "train/red/red0.png", "to": "train/blue/red0.png", "action": "relabel"},
        {"path": "val/blue/blue1.png", "to": "_removed/val/blue/blue1.png", "action": "remove"}]
    assert tree(data) == before
    done = relabel(data, fixes)
    assert done.exit_code == 0, done.output
    assert "moved train/red/red0.png -> train/blue/red0.png" in done.output and "2 file(s) moved" in done.output
    after = tree(data)
    assert after["train/blue/red0.png"] == before["train/red/red0.png"] and "train/red/red0.png" not in after
    assert after["_removed/val/blue/blue1.png"] == before["val/blue/blue1.png"]
    assert after["train/red/red1.png"] == before["train/red/red1.png"]
    manifest = scan(data)  # _removed/ is neither a class nor a skipped file
    assert manifest.classes == ["blue", "red"] and not manifest.skipped
    assert len(manifest.entries) == len(before) - 1


def test_class_folders_without_splits(tmp_path):
    root = make_folder(tmp_path / "flat", {"": 2})
    fixes = fix_list(tmp_path / "f.csv", [{"path": "red/red0.png", "class": "red", "suggested": "blue", "action": "relabel"},
                                          {"path": "blue/blue0.png", "class": "blue", "action": "remove"}])
    assert relabel(root, fixes).exit_code == 0
    assert (root / "blue/red0.png").is_file() and (root / "_removed/blue/blue0.png").is_file()
    assert scan(root).classes == ["blue", "red"]


@pytest.mark.parametrize("row, field, words", [
    ({"path": "../d/train/red/red0.png", "action": "remove"}, "path", "leaves the dataset root"),
    ({"path": "train/../../x.png", "action": "remove"}, "path", "leaves the dataset root"),
    ({"path": "/etc/passwd", "action": "remove"}, "path", "is absolute"),
    ({"path": "train/red/outside.png", "action": "remove"}, "path", "symbolic link leading outside"),
    ({"path": "train/red/red0.png", "class": "red", "suggested": "green", "action": "relabel"}, "suggested",
     "'green' is not another class folder of train (classes: blue, red)"),
    ({"path": "train/red/red0.png", "class": "red", "suggested": "red", "action": "relabel"}, "suggested", "not another class"),
    ({"path": "train/red/red0.png", "class": "red", "suggested": "blue", "action": "relabel"}, "path", "exists already"),
    ({"path": "train/red/red0.png", "action": "delete"}, "action", "'delete' is not one of relabel, remove, keep"),
    ({"path": "train/red/red0.png", "class": "blue", "action": "remove"}, "class", "the folders changed since the audit"),
    ({"path": "train/red/gone.png", "action": "remove"}, "path", "is not a file"),
    ({"path": "train/red0.png", "action": "remove"}, "path", "not inside a class folder"),
])
def test_a_bad_row_refuses_the_whole_list(data, tmp_path, row, field, words):
    (tmp_path / "secret.png").write_bytes(b"not yours")
    os.symlink(tmp_path / "secret.png", data / "train/red/outside.png")
    (data / "train/blue/red0.png").write_bytes(b"already here")
    (data / "train/red0.png").write_bytes(b"loose")
    fixes = fix_list(tmp_path / "fixes.csv", [
        {"path": "val/red/red1.png", "class": "red", "suggested": "blue", "action": "relabel"},  # a good row first
        {"class": "", "suggested": "", **row}])
    before = tree(data)
    result = relabel(data, fixes)
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"Error: {fixes}, row 3, {field}: ") and words in result.output, result.output
    assert "nothing was moved" in result.output and len(result.output.strip().splitlines()) == 1
    assert tree(data) == before


def test_clashing_rows_and_missing_columns_are_refused(data, tmp_path):
    twice = fix_list(tmp_path / "twice.csv", [{"path": "train/red/red0.png", "class": "red", "action": "remove"}] * 2)
    result = relabel(data, twice)
    assert result.exit_code == 2 and "row 3, path" in result.output and "clashes with an earlier row" in result.output
    (tmp_path / "bad.csv").write_text("file,what\ntrain/red/red0.png,remove\n")
    result = relabel(data, tmp_path / "bad.csv")
    assert result.exit_code == 2 and "row 1: no 'path' column" in result.output
    result = relabel(data, tmp_path / "none.csv")
    assert result.exit_code == 2 and "fix list not found" in result.output
    assert (data / "train/red/red0.png").is_file()


def test_write_fix_list_proposes_relabel_and_remove(tmp_path):
    found = {"label_issues": [{"path": "train/a/x.png", "split": "train", "class": "a", "suggested": "b", "score": 0.93}],
             "outliers": [{"path": "val/b/y.png", "split": "val", "class": "b", "suggested": None, "score": 2.5}]}
    with open(write_fix_list(found, tmp_path / "out" / "fixes.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["path"], r["suggested"], r["finding"], r["action"]) for r in rows] == [
        ("train/a/x.png", "b", "label_issue", "relabel"), ("val/b/y.png", "", "outlier", "remove")]


def test_relabel_then_extract_computes_nothing(data, tmp_path, fast_args):
    first = pipeline.extract(data, **fast_args)
    fixes = fix_list(tmp_path / "fixes.csv", [
        {"path": "train/red/red2.png", "class": "red", "suggested": "blue", "action": "relabel"},
        {"path": "train/blue/blue0.png", "class": "blue", "action": "remove"}])
    moved = pipeline.apply_fixes(data, fixes)["moved"]
    assert [m["to"] for m in moved] == ["train/blue/red2.png", "_removed/train/blue/blue0.png"]
    again = pipeline.extract(data, **fast_args)
    assert again["cache"] == first["cache"] and again["computed"] == 0 and again["removed"] == 1
    with pipeline.FeatureFile(again["cache"]) as f:
        labels = dict(zip(f.column("train", "paths"), f.column("train", "labels")))
        assert f.classes[labels["train/blue/red2.png"]] == "blue" and "train/blue/blue0.png" not in labels

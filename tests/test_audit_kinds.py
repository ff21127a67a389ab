"""The table of audit finding kinds: each kind is found by its module, the outputs loop over the table, and a new
check is one module plus one entry."""

import csv
import inspect
import json
import sys
import types
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from helpers import make_folder

import pipeline
from pipeline.audit import kinds, rank_findings
from pipeline.audit.kinds import FINDINGS, NEAR_COPY_COSINE, ImageKind, Search, find
from pipeline.audit.vectors import Rows
from pipeline.cli import main
from pipeline.cli.audit import _audit_text
from pipeline.datasets import Entry
from pipeline.training import compare


def rows(n: int = 12) -> Rows:
    """Two clusters of ``n`` images each; the last image of class b is a byte-identical copy of the first of a."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], n)
    X = np.abs(rng.normal(0, 1, (2, 16))[y] + rng.normal(0, 0.3, (2 * n, 16))).astype(np.float32)
    images = [Entry("train", "ab"[c], f"train/{'ab'[c]}/{i}.png", f"sha{i}") for i, c in enumerate(y)]
    images[-1] = Entry("train", "b", "train/b/copy.png", "sha0")
    X[-1] = X[0]
    return Rows(images, np.zeros(2 * n, int), y, X)


def fake_kind(monkeypatch, name: str, action: str, paths: list[str], score: float = 0.9) -> ImageKind:
    """Register an image kind (last in the table) whose module ``pipeline.audit.<name>`` lists those of ``paths``
    that are in the rows searched."""
    module = types.ModuleType(f"pipeline.audit.{name}")

    def find_them(search: Search) -> dict:
        listed = [e.as_dict() for e in search.rows.images if e.path in paths]
        return {name: [{**x, "suggested": None, "score": score} for x in listed]}

    module.find = find_them
    monkeypatch.setitem(sys.modules, module.__name__, module)
    kind = ImageKind(name, name, one=name.replace("_", " ")[:-1], action=action, marker="s", marks="squares",
                     score="test units", score_explained="units of the test", score_caption="{:.2f} test units")
    monkeypatch.setitem(kinds.FINDINGS, name, kind)
    return kind


def test_the_threshold_default_is_declared_once():
    from pipeline.cli.audit import audit
    from pipeline.cli.report import report
    from pipeline.report import write_report

    for function in (pipeline.audit_cache, write_report):
        assert inspect.signature(function).parameters["threshold"].default == NEAR_COPY_COSINE
    for command in (audit, report):
        assert next(p.default for p in command.params if p.name == "threshold") == NEAR_COPY_COSINE


def test_every_kind_is_found_by_its_module_in_table_order():
    found = find(list(FINDINGS.values()), Search(rows(), ["a", "b"], threshold=0.9999))
    assert list(found) == list(FINDINGS)
    assert [[g["path"] for g in group] for group in found["label_conflicts"]] == [["train/a/0.png", "train/b/copy.png"]]
    assert all({"path", "split", "class", "suggested", "score"} <= set(x) for k in kinds.image_kinds()
               for x in found[k.name])


def test_an_image_is_listed_under_one_kind_and_removal_claims_it_first(monkeypatch):
    monkeypatch.setattr(kinds, "FINDINGS", {k.name: k for k in kinds.group_kinds()})
    fake_kind(monkeypatch, "relabelled", "relabel", ["train/a/1.png", "train/a/2.png"])
    fake_kind(monkeypatch, "removed", "remove", ["train/a/2.png", "train/a/3.png"], score=0.5)
    found = rank_findings(rows(), ["a", "b"])
    assert list(found) == ["relabelled", "removed"]
    assert [x["path"] for x in found["relabelled"]] == ["train/a/1.png"]
    assert [x["path"] for x in found["removed"]] == ["train/a/2.png", "train/a/3.png"]
    assert rank_findings(rows(), ["a", "b"], min_score=0.6)["relabelled"] == found["relabelled"] + [
        {"path": "train/a/2.png", "split": "train", "class": "a", "suggested": None, "score": 0.9}]


def test_a_new_kind_is_one_module_and_one_entry(monkeypatch, tmp_path, fast_args):
    root = make_folder(tmp_path / "d", {"train": 4, "val": 2})
    cache = pipeline.extract(root, **fast_args)["cache"]
    fake_kind(monkeypatch, "blank_frames", "remove", ["train/red/red0.png"], score=9.0)
    result = CliRunner().invoke(main, ["audit", cache, "--threshold", "1", "--min-score", "5", "--output", str(tmp_path / "sheets"),
                                       "--fix-list", str(tmp_path / "fixes.csv"), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert list(found)[-3:] == ["blank_frames", "sheets", "fix_list"]
    assert [x["path"] for x in found["blank_frames"]] == ["train/red/red0.png"]
    assert "blank frames in train+val: 1  (score: test units)\n  9.00  train/red/red0.png [train/red]" in _audit_text(found)
    assert [Path(s).name for s in found["sheets"]] == ["blank_frames.png"]
    with open(tmp_path / "fixes.csv", newline="") as fh:
        assert [(r["path"], r["finding"], r["action"]) for r in csv.DictReader(fh)] == [
            ("train/red/red0.png", "blank_frame", "remove")]
    run = compare(cache, ["logreg"], runs_root=str(tmp_path / "runs"))[0]["run_dir"]
    page = Path(pipeline.write_report([run], tmp_path / "report.html")["report"]).read_text(encoding="utf-8")
    assert "crosses outliers and squares blank frames (searched in train and val)" in page
    assert "</h3><p>Most suspicious first; score: units of the test.</p>" in page  # red0 is listed as an outlier there: it came first

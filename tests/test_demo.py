"""The demo ends with the report of its runs and the next commands a newcomer would try."""

from pathlib import Path

from click.testing import CliRunner
from helpers import SHARED_WEIGHTS, make_folder, needs_shared

import pipeline.demo
from pipeline.cli import main


@needs_shared
def test_demo_writes_the_report_and_prints_what_to_try_next(tmp_path, monkeypatch):
    # a few synthetic pictures stand in for the 1,797 digits: the same steps, in seconds
    monkeypatch.setattr(pipeline.demo, "write_digits", lambda root: make_folder(Path(root), {"train": 8, "val": 3, "test": 2}))
    workdir = tmp_path / "sample"
    result = CliRunner().invoke(main, ["demo", "--workdir", str(workdir), "--weights-dir", str(SHARED_WEIGHTS)])
    assert result.exit_code == 0, result.output
    report = workdir / "report.html"
    assert f"report: {report}" in result.stdout and report.is_file()
    text = report.read_text(encoding="utf-8")
    assert "Map of the features" in text and all(head in text for head in ("logreg", "dense", "svm", "knn"))
    lines = result.stdout.split("next:\n", 1)[1].splitlines()
    assert lines[0].strip().startswith("transfer audit ") and "--fix-list" in lines[0]
    assert lines[1].strip().startswith("transfer relabel ") and lines[1].endswith("--dry-run")
    assert any(line.strip().startswith("transfer predict ") for line in lines)

"""Files from others, round two: every file the project writes goes through one helper that never writes through
a planted link, never leaves half a file, never replaces a reviewed fix list without --force, and replaces an
export folder only when it holds exactly what an earlier export wrote."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import logreg_run, refused
from pipeline import atomic, train
from pipeline.audit.fixes import write_fix_list
from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.deploy.formats import MARKER, get
from pipeline.prediction import write_csv

SECRET = "a file the victim can write: do not touch"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim.txt"
    path.write_text(SECRET)
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict:
    """A feature file and a logreg run of a small synthetic folder (VGG16, random weights, 32 px)."""
    return logreg_run(tmp_path_factory.mktemp("writes"))


def plant_old_temporary_names(output: Path, victim: Path) -> None:
    """Links at the temporary names the writer used to choose (``.<stem>.tmp-<pid><suffix>``)."""
    for name in (f".{output.stem}.tmp-{os.getpid()}{output.suffix}", f".{output.name}.tmp-{os.getpid()}"):
        (output.parent / name).symlink_to(victim)


# ---------------------------------------------------------------- the helper


def test_a_link_planted_at_a_predictable_temporary_name_is_never_written_through(tmp_path, victim):
    output = tmp_path / "out" / "predictions.csv"
    output.parent.mkdir()
    plant_old_temporary_names(output, victim)
    results = [{"path": "a.png", "label": "red", "probabilities": {"blue": 0.1, "red": 0.9}}]
    write_csv(results, ["blue", "red"], output)
    assert victim.read_text() == SECRET
    assert output.read_text().startswith("path,label,p_blue,p_red,error")


def test_a_link_at_the_chosen_temporary_name_is_passed_over_not_followed(tmp_path, victim, monkeypatch):
    tokens = iter(["aaaa", "bbbb"])
    monkeypatch.setattr(atomic.secrets, "token_hex", lambda n: next(tokens))
    (tmp_path / ".notes.tmp-aaaa.txt").symlink_to(victim)
    atomic.write_text(tmp_path / "notes.txt", "mine")
    assert victim.read_text() == SECRET and (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.tmp-aaaa.txt", "notes.txt", "victim.txt"]


def test_a_destination_that_is_a_link_is_replaced_not_written_through(tmp_path, victim):
    report = tmp_path / "report.html"
    report.symlink_to(victim)
    atomic.write_text(report, "<html></html>")
    assert not report.is_symlink() and report.read_text() == "<html></html>" and victim.read_text() == SECRET


def test_a_temporary_file_swapped_while_written_is_never_published(tmp_path, victim):
    target = tmp_path / "labels.txt"
    target.write_text("cats\n")
    with pytest.raises(PipelineError, match="replaced while it was written"):
        with atomic.replacing(target) as tmp:
            tmp.unlink()
            tmp.symlink_to(victim)
    assert target.read_text() == "cats\n" and victim.read_text() == SECRET
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.txt", "victim.txt"]


def test_a_temporary_file_swapped_for_a_hard_link_is_never_published(tmp_path, victim):
    with pytest.raises(PipelineError, match="replaced while it was written"):
        with atomic.replacing(tmp_path / "out.csv") as tmp:
            tmp.unlink()
            os.link(victim, tmp)
    assert not (tmp_path / "out.csv").exists() and victim.read_text() == SECRET


def test_a_writer_that_writes_atomically_itself_is_published(tmp_path):
    with atomic.replacing(tmp_path / "model.onnx") as tmp:
        atomic.write_bytes(tmp, b"onnx bytes")  # as converting.to_onnx does inside an export
    assert (tmp_path / "model.onnx").read_bytes() == b"onnx bytes"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_temporary_names_cannot_be_guessed_and_keep_the_whole_suffix(tmp_path):
    names = {atomic.temporary_name(tmp_path / "base.weights.h5").name for _ in range(20)}
    assert len(names) == 20 and all(n.startswith(".base.tmp-") and n.endswith(".weights.h5") for n in names)


def test_a_link_planted_at_a_runs_old_temporary_folder_name_is_left_alone(made, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / f".run.tmp-{os.getpid()}").symlink_to(elsewhere, target_is_directory=True)
    run = train(made["cache"], "logreg", run_dir=tmp_path / "run")["run_dir"]
    assert json.loads((Path(run) / "config.json").read_text())["head"] == "logreg" and not any(elsewhere.iterdir())


# ---------------------------------------------------------------- fix lists


def test_a_fix_list_is_not_replaced_without_force(made, tmp_path):
    reviewed = tmp_path / "fixes.csv"
    reviewed.write_text("path,action\ntrain/red/red0.png,keep\n")
    args = ["audit", made["cache"], "--fix-list", str(reviewed)]
    refused(CliRunner().invoke(main, args), str(reviewed), "--force")
    assert reviewed.read_text() == "path,action\ntrain/red/red0.png,keep\n"
    result = CliRunner().invoke(main, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert reviewed.read_text().startswith("path,split,class,suggested,score,finding,action")


def test_a_fix_list_path_that_is_a_link_is_refused_and_with_force_replaced(tmp_path, victim):
    fixes = tmp_path / "fixes.csv"
    fixes.symlink_to(victim)
    with pytest.raises(PipelineError, match="pass --force"):
        write_fix_list({"label_issues": [], "outliers": []}, fixes)
    write_fix_list({"label_issues": [], "outliers": []}, fixes, force=True)
    assert victim.read_text() == SECRET and not fixes.is_symlink()
    assert fixes.read_text().strip() == "path,split,class,suggested,score,finding,action"


# ---------------------------------------------------------------- folders (SavedModel exports)


def test_a_savedmodel_folder_holding_other_files_is_refused_not_deleted(tmp_path):
    folder = tmp_path / "exported"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"pb")
    (folder / "notes.txt").write_text("mine")
    problem = get("savedmodel").output_problem(folder)
    assert "no readable .transfer-export.json" in problem and str(folder) in problem
    with pytest.raises(PipelineError, match="left as it was"):
        with atomic.replacing_folder(folder, MARKER) as tmp:
            (tmp / "saved_model.pb").write_bytes(b"new")
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "saved_model.pb"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]


def test_an_earlier_export_folder_is_replaced_but_not_once_something_was_added(tmp_path):
    folder = tmp_path / "exported"
    for content in (b"one", b"two"):
        with atomic.replacing_folder(folder, MARKER) as tmp:
            (tmp / "variables").mkdir()
            (tmp / "variables" / "variables.index").write_bytes(content)
            (tmp / "saved_model.pb").write_bytes(content)
    assert (folder / "saved_model.pb").read_bytes() == b"two" and get("savedmodel").output_problem(folder) == ""
    assert folder.stat().st_mode & 0o777 == 0o777 & ~atomic.umask()
    (folder / "variables" / "mine.txt").write_text("mine")
    assert "'variables/mine.txt'" in get("savedmodel").output_problem(folder)
    with pytest.raises(PipelineError, match="variables/mine.txt"):
        with atomic.replacing_folder(folder, MARKER) as tmp:
            (tmp / "saved_model.pb").write_bytes(b"three")
    assert (folder / "variables" / "mine.txt").read_text() == "mine"


def test_an_export_folder_that_is_a_link_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "exported").symlink_to(elsewhere, target_is_directory=True)
    assert "is a link" in get("savedmodel").output_problem(tmp_path / "exported")

"""The saved audit: a second audit of the same version of a feature file with the same settings (the report's,
most often) reads the findings back instead of searching; a commit, other settings or a saved file that does
not fit the feature file make it search again and replace what was saved."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import make_folder
from test_report_caps import synthetic_cache

import pipeline
from pipeline.audit import duplicates, labels, neighbours, outliers, saved
from pipeline.cli import main


@pytest.fixture
def cache(tmp_path: Path) -> str:
    """A synthetic feature file in ``<cache_dir>/<dataset>/``, so its saved audit lands inside ``tmp_path``."""
    return synthetic_cache(tmp_path / "cache" / "ds" / "features.h5")


def forbid_searching(monkeypatch) -> None:
    """From now on, building the neighbour index or running any finding kind fails the test."""
    def searched(*args, **kwargs):
        raise AssertionError("the audit searched again")

    monkeypatch.setattr(neighbours, "Neighbourhood", searched)
    for module in (duplicates, labels, outliers):
        monkeypatch.setattr(module, "find", searched)


def test_a_second_audit_reuses_the_first_and_says_so(cache, monkeypatch, tmp_path):
    first = pipeline.audit_cache(cache)
    assert first["reused"] is False
    assert saved.location(cache) == tmp_path / "cache" / "audits" / "ds" / "features.h5.json"
    forbid_searching(monkeypatch)
    second = pipeline.audit_cache(cache, fix_list=tmp_path / "fixes.csv")
    assert second["reused"] is True and second["fix_list"] == str(tmp_path / "fixes.csv")
    assert {k: v for k, v in second.items() if k != "fix_list"} == {**first, "reused": True}
    with pytest.raises(AssertionError, match="searched again"):
        pipeline.audit_cache(cache, recompute=True)


def test_other_settings_search_again_while_top_and_min_score_only_choose_what_is_listed(cache):
    pipeline.audit_cache(cache)
    for settings in (dict(threshold=0.9), dict(include_test=True)):
        assert pipeline.audit_cache(cache, **settings)["reused"] is False, settings
        assert pipeline.audit_cache(cache, **settings)["reused"] is True, settings
    assert pipeline.audit_cache(cache)["reused"] is False  # one saved audit per file: the last settings'
    for settings in (dict(top=3), dict(min_score=1.2), dict(top=0), dict(top=30, min_score=0.5)):
        reused = pipeline.audit_cache(cache, **settings)
        assert reused["reused"] is True, settings
        assert reused == {**pipeline.audit_cache(cache, recompute=True, **settings), "reused": True}, settings
    listed = pipeline.audit_cache(cache, min_score=1.2)["outliers"]
    assert 0 < len(listed) < 20 and min(x["score"] for x in listed) >= 1.2


def test_a_commit_to_the_feature_file_makes_it_search_again(tmp_path, fast_args):
    data = make_folder(tmp_path / "d", {"train": 4, "val": 2})
    cache = pipeline.extract(data, **fast_args)["cache"]
    runner = CliRunner()
    audit = ["audit", cache, "--threshold", "1", "--json"]
    assert [json.loads(runner.invoke(main, audit).stdout)["reused"] for _ in range(2)] == [False, True]
    make_folder(tmp_path / "more", {"train": 1}, seed=99)
    os.replace(tmp_path / "more" / "train" / "red" / "red0.png", data / "train" / "red" / "new.png")
    pipeline.extract(data, **fast_args)
    found = json.loads(runner.invoke(main, audit).stdout)
    assert found["reused"] is False and found["images"] == 13
    text = runner.invoke(main, audit[:-1]).stdout
    assert "13 images, near copies at cosine >= 1.0 (the saved audit of this version, reused)" in text


def plant(cache: str, change) -> None:
    """Rewrite the saved audit of ``cache`` through ``change(saved_dict)`` (key kept: only the content lies)."""
    path = saved.location(cache)
    kept = json.loads(path.read_text())
    change(kept["result"])
    path.write_text(json.dumps(kept))


@pytest.mark.parametrize("change, why", [
    (lambda r: r["outliers"][0].update(path="train/c0/elsewhere.png"), "is not an image of the feature file"),
    (lambda r: r["outliers"][0].update({"class": "c1" if r["outliers"][0]["class"] == "c0" else "c0"}),
     "is not an image of the feature file in that split and class"),
    (lambda r: r["outliers"][0].update(score="high"), "a suggested class or a score is not one"),
    (lambda r: r["near_duplicates"][0].pop(), "not a list of two or more images"),
    (lambda r: r.update(images=r["images"] + 1), "image count is wrong"),
    (lambda r: r.update(threshold=0.5), "threshold or image count is wrong"),
    (lambda r: r.pop("label_issues"), "other keys than an audit's"),
])
def test_a_saved_audit_that_does_not_fit_the_file_is_ignored_and_replaced(cache, caplog, change, why):
    first = pipeline.audit_cache(cache)
    plant(cache, change)
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        again = pipeline.audit_cache(cache)
    assert again["reused"] is False and again == {**first, "reused": False}
    assert why in caplog.text and "the audit ran again and replaced it" in caplog.text
    assert pipeline.audit_cache(cache)["reused"] is True


def test_a_corrupt_saved_file_or_a_planted_link_is_replaced_never_followed(cache, caplog, tmp_path):
    path = saved.location(cache)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff{not json")
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        assert pipeline.audit_cache(cache)["reused"] is False
    assert "not a readable JSON file" in caplog.text
    victim = tmp_path / "victim.json"
    victim.write_text(path.read_text())  # a valid saved audit, but through a link: not read, not written through
    path.unlink()
    path.symlink_to(victim)
    before = victim.read_text()
    assert pipeline.audit_cache(cache)["reused"] is False
    assert not path.is_symlink() and victim.read_text() == before
    assert pipeline.audit_cache(cache)["reused"] is True


def test_the_report_after_an_audit_reads_the_saved_findings(cache, monkeypatch, tmp_path):
    run = pipeline.train(cache, "logreg", runs_root=tmp_path / "runs")["run_dir"]
    found = pipeline.audit_cache(cache)
    forbid_searching(monkeypatch)
    page = Path(pipeline.write_report([run], tmp_path / "report.html")["report"]).read_text(encoding="utf-8")
    assert f"<h3>outliers: {len(found['outliers'])}</h3>" in page
    assert f"<h3>near duplicates: {len(found['near_duplicates'])}</h3>" in page

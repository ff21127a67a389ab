"""One writer per feature file; readers are never blocked and never see a half-written file."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline import extract, load
from pipeline.cli import main
from pipeline.store import FeatureFile
from helpers import make_folder
from test_crash_resume import ARGS, FAST, SLOW_PARTS, assert_same, part_files, snapshot, transfer, wait_for

pytestmark = pytest.mark.slow  # together a minute or more: started first (conftest.py)

HOLD_COMMIT = """
import os
import pipeline.store.writing as store
_write_split = store._write_split
def write_split(f, split, *args):
    _write_split(f, split, *args)
    open(MARKER, "w").close()
    while not os.path.exists(MARKER + ".go"):
        time.sleep(0.01)
store._write_split = write_split
"""


def test_second_writer_is_refused_naming_the_first_while_readers_carry_on(tmp_path, converted_cache):
    root = make_folder(tmp_path / "photos", {"val": 2})
    cache = converted_cache(tmp_path / "cache")  # the child runs the base on ONNX Runtime
    published = Path(extract(root, cache_dir=str(cache), **FAST)["cache"])
    before = snapshot(published)
    make_folder(root, {"train": 20}, seed=100)
    writer = transfer(["extract", str(root), *ARGS, "--cache-dir", str(cache)], SLOW_PARTS)
    wait_for(lambda: bool(part_files(cache)), writer)

    second = CliRunner().invoke(main, ["extract", str(root), *ARGS, "--cache-dir", str(cache)])
    assert second.exit_code == 2
    assert "locked by another run" in second.output and f"pid {writer.pid}" in second.output
    assert "Traceback" not in second.output

    started = time.monotonic()
    info = CliRunner().invoke(main, ["info", str(published), "--json"])
    X, y, _ = load(published, "val")
    assert time.monotonic() - started < 10  # not waiting for the writer
    assert info.exit_code == 0 and '"rows": 4' in info.output and X.shape[0] == 4

    assert writer.wait(timeout=300) == 0, writer.stderr.read().decode()[-2000:]
    reference = extract(root, cache_dir=str(tmp_path / "reference"), **FAST)
    assert_same(snapshot(published), snapshot(reference["cache"]))
    assert_same({"val": snapshot(published)["val"]}, before)


def test_two_writers_at_once_leave_exactly_one_correct_file(tmp_path, converted_cache):
    root = make_folder(tmp_path / "photos", {"train": 15, "val": 3})
    cache = converted_cache(tmp_path / "cache")
    exe = Path(sys.executable).with_name("transfer")
    procs = [subprocess.Popen([str(exe), "extract", str(root), *ARGS, "--cache-dir", str(cache)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 2]), results
    for code, err in results:
        if code == 2:
            assert "locked by another run" in err and "Traceback" not in err

    files = sorted(p.name for p in (cache / "photos").iterdir())
    assert files == ["vgg16-32-avg-random.h5", "vgg16-32-avg-random.h5.lock"]
    reference = extract(root, cache_dir=str(tmp_path / "reference"), **FAST)
    got = snapshot(cache / "photos" / files[0])
    assert {s: len(rows) for s, rows in got.items()} == reference["splits"]  # no duplicated rows
    assert_same(got, snapshot(reference["cache"]))


def test_a_reader_open_during_the_commit_keeps_a_whole_old_version(tmp_path, converted_cache):
    root = make_folder(tmp_path / "photos", {"train": 3})
    cache = converted_cache(tmp_path / "cache")
    published = Path(extract(root, cache_dir=str(cache), **FAST)["cache"])
    old = snapshot(published)
    make_folder(root, {"val": 3}, seed=100)
    marker = tmp_path / "in-commit"
    writer = transfer(["extract", str(root), *ARGS, "--cache-dir", str(cache)], HOLD_COMMIT, marker)
    wait_for(marker.exists, writer)

    reader = FeatureFile(published)  # opened while the new version is half written beside it
    assert reader.splits == ["train"] and len(reader.column("train", "labels")) == 6
    Path(str(marker) + ".go").touch()
    assert writer.wait(timeout=300) == 0
    assert reader.splits == ["train"] and reader.features("train")[()].shape[0] == 6  # still the whole old one
    reader.close()
    new = snapshot(published)
    assert set(new) == {"train", "val"} and len(new["val"]) == 6
    assert_same({"train": new["train"]}, old)

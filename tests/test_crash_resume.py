"""A `transfer extract` killed with SIGKILL (during extraction, during the commit, just after it) never
leaves the published feature file corrupt; the rerun reuses the finished batches and ends with the
same rows and features as an uninterrupted run.

The children run the base on ONNX Runtime from a copy of the session's converted model (``converted_cache``),
so they start without TensorFlow; the reruns in this process run it on TensorFlow (the runtime is not part of
the cache key)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline import extract
from pipeline.cli import main
from pipeline.store import FeatureFile
from helpers import COLORS, copied, make_folder, make_image

pytestmark = pytest.mark.slow  # together a minute or more: started first (conftest.py)

ARGS = ["--backbone", "vgg16", "--image-size", "32", "--weights", "none", "--batch-size", "2", "--runtime", "onnx"]
FAST = dict(backbone="vgg16", image_size=32, weights="none", batch_size=2)

# Test-only slow-downs, injected into the child process before the command runs.
SLOW_PARTS = """
import pipeline.store as store
_write = store.Parts.write
def write(self, keys, features, runtime):
    time.sleep(0.2)
    return _write(self, keys, features, runtime)
store.Parts.write = write
"""
PAUSE_IN_COMMIT = """
import pipeline.store.writing as store
_write_split = store._write_split
def write_split(f, split, *args):
    _write_split(f, split, *args)
    open(MARKER, "w").close()
    time.sleep(600)
store._write_split = write_split
"""
PAUSE_AFTER_REPLACE = """
import pipeline.store as store
_clear = store.Parts.clear
def clear(self):
    open(MARKER, "w").close()
    time.sleep(600)
store.Parts.clear = clear
"""


def transfer(args: list[str], patch: str = "", marker: Path | None = None) -> subprocess.Popen:
    """Start ``transfer <args>`` in a child process, with ``patch`` applied first."""
    code = (f"import time\nMARKER = {str(marker)!r}\n{patch}\n"
            f"from pipeline.cli import main\nmain({args!r}, prog_name='transfer')\n")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"child ended before the kill point: {proc.communicate()[1].decode()[-2000:]}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.01)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def part_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("*/*.parts-*/part-*.h5"))


def part_rows(cache: Path) -> int:
    import h5py

    total = 0
    for part in part_files(cache):
        with h5py.File(part, "r") as f:
            total += f["sha256"].shape[0]
    return total


def snapshot(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """split -> relative path -> features (opening it also proves the file is whole and valid)."""
    with FeatureFile(path) as f:
        return {s: dict(zip(f.column(s, "paths"), f.features(s)[()])) for s in f.splits}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for split in a:
        assert sorted(a[split]) == sorted(b[split])  # same rows, none duplicated or lost
        for path, x in a[split].items():
            np.testing.assert_allclose(x, b[split][path], atol=1e-3)


@pytest.fixture(scope="module")
def grown_once(tmp_path_factory, converted_cache):
    """A published cache of 24 images (with the converted base), then 60 more images added to the folder, and a
    reference cache of all 84 made without interruption (built once: each test gets copies, see `grown`)."""
    tmp = tmp_path_factory.mktemp("grown")
    root = make_folder(tmp / "photos", {"train": 8, "val": 4})
    converted_cache(tmp / "cache")
    first = extract(root, cache_dir=str(tmp / "cache"), **FAST)
    for label, color in COLORS.items():
        for i in range(30):
            make_image(root / "train" / label / f"added{i}.png", color, 1000 + i + (50 if label == "red" else 0))
    reference = extract(root, cache_dir=str(tmp / "reference"), **FAST)
    assert first["computed"] == 24 and reference["computed"] == 84
    return tmp, first, reference


@pytest.fixture
def grown(grown_once, tmp_path):
    """`grown_once`'s photos and published cache copied for a test to extract into (and kill); its reference."""
    tmp, first, reference = grown_once
    root, cache = copied(tmp / "photos", tmp_path / "photos"), copied(tmp / "cache", tmp_path / "cache")
    return root, cache, {**first, "cache": str(cache / Path(first["cache"]).relative_to(tmp / "cache"))}, reference


def test_kill_during_extraction_reuses_finished_batches(grown, tmp_path):
    root, cache, first, reference = grown
    before = snapshot(first["cache"])
    proc = transfer(["extract", str(root), *ARGS, "--cache-dir", str(cache), "--json"], SLOW_PARTS)
    wait_for(lambda: len(part_files(cache)) >= 3, proc)
    kill(proc)
    assert_same(snapshot(first["cache"]), before)  # the published file: whole, old version
    done = part_rows(cache)
    assert done >= 6

    again = extract(root, cache_dir=str(cache), **FAST)
    assert again["computed"] == 60 - done < 60  # only the batches not finished before the kill
    assert_same(snapshot(again["cache"]), snapshot(reference["cache"]))
    assert part_files(cache) == [] and not list(cache.glob("*/*.tmp-*"))


@pytest.mark.parametrize("point", ["during-commit", "after-replace"])
def test_kill_around_the_commit(grown, tmp_path, point):
    root, cache, first, reference = grown
    before = snapshot(first["cache"])
    marker = tmp_path / "reached"
    patch = PAUSE_IN_COMMIT if point == "during-commit" else PAUSE_AFTER_REPLACE
    proc = transfer(["extract", str(root), *ARGS, "--cache-dir", str(cache)], patch, marker)
    wait_for(marker.exists, proc)
    published = Path(first["cache"])
    tmp_file = published.with_name(f"{published.name}.tmp-{proc.pid}")
    if point == "during-commit":
        assert tmp_file.exists()  # the new version is being written beside the old one
        assert_same(snapshot(published), before)
    kill(proc)
    after_kill = snapshot(published)  # whole either way: old version, or the complete new one
    assert_same(after_kill, before if point == "during-commit" else snapshot(reference["cache"]))
    assert part_files(cache)  # the finished batches survive the kill

    again = extract(root, cache_dir=str(cache), **FAST)
    assert again["computed"] == 0  # everything came from the parts or the file
    assert_same(snapshot(again["cache"]), snapshot(reference["cache"]))
    assert not tmp_file.exists() and part_files(cache) == []


def test_kill_the_real_command_as_soon_as_it_writes(grown):
    """No slow-down: the plain `transfer` command, killed the moment its first batch lands."""
    root, cache, first, reference = grown
    before = snapshot(first["cache"])
    exe = Path(sys.executable).with_name("transfer")
    proc = subprocess.Popen([str(exe), "extract", str(root), *ARGS, "--cache-dir", str(cache)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not part_files(cache) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    killed_midway = proc.poll() is None  # almost always; on a very fast machine it may finish first
    if killed_midway:
        kill(proc)
    assert_same(snapshot(first["cache"]), before if killed_midway else snapshot(reference["cache"]))
    again = extract(root, cache_dir=str(cache), **FAST)
    assert_same(snapshot(again["cache"]), snapshot(reference["cache"]))
    assert part_files(cache) == []


def test_json_summary_of_a_resumed_run_counts_reuse(grown):
    root, cache, _, _ = grown
    proc = transfer(["extract", str(root), *ARGS, "--cache-dir", str(cache)], SLOW_PARTS)
    wait_for(lambda: len(part_files(cache)) >= 2, proc)
    kill(proc)
    done = part_rows(cache)
    out = CliRunner().invoke(main, ["extract", str(root), *ARGS, "--cache-dir", str(cache), "--json"])  # in-process
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert (summary["computed"], summary["reused"]) == (60 - done, 24 + done)

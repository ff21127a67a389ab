"""Commits that cost what changed: an append writes a segment of the new rows and a small manifest, a removal
copies nothing, compaction keeps every row in place, a kill before the manifest swap leaves the previous version,
and segment files are checked before they are trusted."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.config import FeatureConfig
from pipeline.errors import PipelineError
from pipeline.store import FeatureCache, FeatureFile, Row
from pipeline.store import segments as seg

WIDTH = 512
CONFIG = FeatureConfig("vgg16", "none", "0" * 64, 32)


def sha(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def vector(n: int) -> np.ndarray:
    return np.random.default_rng(n).normal(size=WIDTH).astype(np.float32)


def rows(numbers, split_of=lambda n: "val" if n % 5 == 0 else "train") -> dict[str, list[Row]]:
    """Image n: path img<n>.png (path order), label n % 2, its own sha256."""
    out: dict[str, list[Row]] = {}
    for n in sorted(numbers, key=lambda n: f"img{n:06d}.png"):
        out.setdefault(split_of(n), []).append(Row(f"img{n:06d}.png", n % 2, sha(n)))
    return out


def publish(path: Path, numbers) -> dict:
    """Commit images ``numbers`` as extraction would: the missing ones computed into part files first."""
    splits = rows(numbers)
    with FeatureCache(path, CONFIG) as cache:
        todo = cache.missing(r.key for rs in splits.values() for r in rs)
        by_key = {(sha(n), 0): n for n in numbers}
        if todo:
            cache.parts.write(todo, np.stack([vector(by_key[k]) for k in todo]))
        cache.commit(["a", "b"], splits, [])
    return splits


def check(path: Path, numbers) -> None:
    """The published file holds exactly ``numbers``, in path order, with their own features."""
    expected = rows(numbers)
    with FeatureFile(path) as f:
        assert f.splits == [s for s in ("train", "val") if s in expected]
        for split, want in expected.items():
            assert list(f.column(split, "paths")) == [r.path for r in want]
            assert list(f.column(split, "sha256")) == [r.sha256 for r in want]
            X = f.features(split)[()]
            np.testing.assert_array_equal(X, np.stack([vector(int(r.path[3:9])) for r in want]))
            assert f.features(split).shape == X.shape and np.array_equal(f.features(split)[3:7], X[3:7])
            assert np.array_equal(f.features(split)[[0, 2]], X[[0, 2]]) and np.array_equal(f.features(split)[-1], X[-1])


def segment_files(path: Path) -> dict[str, os.stat_result]:
    d = seg.folder(path)
    return {p.name: p.stat() for p in sorted(d.iterdir())} if d.is_dir() else {}


@pytest.fixture
def base(tmp_path) -> Path:
    path = tmp_path / "cache" / "data" / CONFIG.file_name()
    publish(path, range(2000))
    return path


def test_the_first_version_is_one_whole_file(base):
    assert segment_files(base) == {}
    with h5py.File(base, "r") as f:  # the documented whole layout
        assert "layout_version" not in f.attrs and f["train/features"].shape == (1600, WIDTH)
    check(base, range(2000))


def test_an_append_writes_only_the_new_rows(base):
    whole = base.stat()
    publish(base, range(2010))
    files = segment_files(base)
    linked = [n for n, st in files.items() if st.st_ino == whole.st_ino]
    assert len(files) == 2 and len(linked) == 1  # the old whole file became a segment by a link, not a copy
    new = next(n for n in files if n not in linked)
    with h5py.File(seg.folder(base) / new, "r") as f:
        assert f["features"].shape == (10, WIDTH)
    assert files[new].st_size < 10 * 4 * WIDTH + 20_000 and base.stat().st_size < whole.st_size / 4
    check(base, range(2010))

    publish(base, range(2020))  # untouched segments stay byte for byte where they were
    after = segment_files(base)
    assert all((after[n].st_ino, after[n].st_mtime_ns, after[n].st_size) ==
               (st.st_ino, st.st_mtime_ns, st.st_size) for n, st in files.items())
    assert len(after) == 3
    check(base, range(2020))


def test_a_removal_copies_nothing(base):
    publish(base, range(2010))
    files = segment_files(base)
    kept = [n for n in range(2010) if n not in range(100, 110)]
    publish(base, kept)
    after = segment_files(base)
    assert {n: (st.st_ino, st.st_mtime_ns) for n, st in after.items()} == \
        {n: (st.st_ino, st.st_mtime_ns) for n, st in files.items()}
    check(base, kept)


def test_compaction_keeps_every_row_and_the_order(base):
    numbers = list(range(2000))
    for step in range(12):  # small appends: size tiers merge them
        numbers += range(3000 + 5 * step, 3005 + 5 * step)
        publish(base, numbers)
        check(base, numbers)
    assert len(segment_files(base)) <= 6
    numbers = [n for n in numbers if n >= 1500]  # most of the first segment dies: it is rewritten
    publish(base, numbers)
    check(base, numbers)
    with FeatureFile(base) as f:
        assert sum(s.rows for s in f.segments) == len(numbers)
    assert len(segment_files(base)) <= 6


def test_a_reader_keeps_its_version_while_compaction_deletes_segments(base):
    publish(base, range(2010))
    reader = FeatureFile(base)
    publish(base, range(1500, 2010))  # the linked whole file is rewritten and deleted
    assert reader.features("train")[()].shape[0] == 1608  # still the version it opened
    reader.close()
    check(base, range(1500, 2010))


KILL_BEFORE_SWAP = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import pipeline.store.writing as writing
from test_segments import publish
def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
writing._publish = killed
publish(__import__("pathlib").Path({path!r}), range(2050))
"""


def test_a_kill_between_writing_a_segment_and_the_swap_leaves_the_previous_version(base):
    publish(base, range(2010))
    before = segment_files(base)
    code = KILL_BEFORE_SWAP.format(tests=str(Path(__file__).parent), path=str(base))
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == -signal.SIGKILL
    assert len(segment_files(base)) == len(before) + 1  # the new segment, written but never published
    check(base, range(2010))
    parts = list(base.parent.glob("*.parts-*/part-*.h5"))
    assert len(parts) == 1  # the finished batch survives

    with FeatureCache(base, CONFIG) as cache:  # the orphan is collected, the batch reused
        assert segment_files(base).keys() == before.keys()
        assert cache.missing((sha(n), 0) for n in range(2050)) == []
    publish(base, range(2050))
    check(base, range(2050))


def test_a_whole_file_written_before_segments_opens_and_grows(tmp_path):
    path = tmp_path / CONFIG.file_name()
    splits = rows(range(30))
    with h5py.File(path, "w") as f:  # as the release before segments wrote it
        f.attrs.update(CONFIG.attrs())
        f["classes"] = np.array(["a", "b"], dtype=object).astype(h5py.string_dtype())
        for split, rs in splits.items():
            g = f.create_group(split)
            g["labels"] = np.array([r.label for r in rs], np.int32)
            g["paths"] = np.array([r.path for r in rs], dtype=object).astype(h5py.string_dtype())
            g["sha256"] = np.array([r.sha256 for r in rs], dtype=h5py.string_dtype("ascii", 64))
            g["view"] = np.zeros(len(rs), np.int32)
            g["features"] = np.stack([vector(int(r.path[3:9])) for r in rs])
    check(path, range(30))
    publish(path, range(35))
    check(path, range(35))


def test_plain_h5py_reads_a_segmented_file_as_the_readme_says(base):
    publish(base, range(2010))
    with h5py.File(base, "r") as f:
        files, groups = f["segments/file"].asstr()[()], f["segments/group"].asstr()[()]
        segment, row = f["train/segment"][()], f["train/row"][()]
        X = np.empty((len(segment), WIDTH), np.float32)
        for i, (name, group) in enumerate(zip(files, groups)):
            with h5py.File(base.with_name(base.name + ".segments") / name, "r") as s:
                X[segment == i] = s[group]["features"][()][row[segment == i]]
    with FeatureFile(base) as f:
        np.testing.assert_array_equal(X, f.features("train")[()])


def test_a_segment_outside_the_manifest_is_never_read_and_is_collected(base):
    publish(base, range(2010))
    planted = seg.folder(base) / seg.new_name()
    with h5py.File(planted, "w") as f:
        f["sha256"] = np.array([sha(1)], dtype=h5py.string_dtype("ascii", 64))
        f["view"] = np.zeros(1, np.int32)
        f["features"] = np.full((1, WIDTH), 99.0, np.float32)
    check(base, range(2010))
    with FeatureCache(base, CONFIG):
        assert not planted.exists()


def _edit_manifest(path: Path, edit) -> None:
    with h5py.File(path, "a") as f:
        edit(f)


@pytest.mark.parametrize("edit, words", [
    (lambda f: f["segments/file"].__setitem__(0, "../../elsewhere.h5"), "/segments/file"),
    (lambda f: f["segments/file"].__setitem__(0, "/etc/passwd"), "/segments/file"),
    (lambda f: f["segments/group"].__setitem__(0, "errors"), "/segments/group"),
    (lambda f: f["train/row"].__setitem__(0, 10**9), "/train/row"),
    (lambda f: f["train/segment"].__setitem__(0, 7), "/train/segment"),
    (lambda f: f.attrs.__setitem__("layout_version", 9), "layout_version"),
])
def test_a_manifest_pointing_elsewhere_is_refused(base, edit, words):
    publish(base, range(2010))
    _edit_manifest(base, edit)
    with pytest.raises(PipelineError, match=words):
        FeatureFile(base)


def test_linked_or_swapped_segments_are_refused(base, tmp_path):
    publish(base, range(2010))
    publish(base, range(2020))
    names = sorted(segment_files(base), key=lambda n: segment_files(base)[n].st_size)
    small, other = seg.folder(base) / names[0], seg.folder(base) / names[1]
    saved = tmp_path / "saved.h5"
    os.replace(small, saved)
    small.symlink_to(saved)  # a link, even to the right content
    with pytest.raises(PipelineError, match="link"):
        FeatureFile(base)
    small.unlink()
    with h5py.File(small, "w") as f:  # the right shape, other images
        f["sha256"] = np.array([sha(n) for n in range(5000, 5010)], dtype=h5py.string_dtype("ascii", 64))
        f["view"] = np.zeros(10, np.int32)
        f["features"] = np.zeros((10, WIDTH), np.float32)
    with pytest.raises(PipelineError, match="other images"):
        FeatureFile(base)
    small.unlink()
    with pytest.raises(PipelineError, match="missing"):
        FeatureFile(base)
    assert other.exists()


def test_nothing_is_written_through_a_linked_segments_folder(base, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    seg.folder(base).symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(PipelineError, match="not a plain folder"):
        publish(base, range(2010))
    assert list(elsewhere.iterdir()) == []
    check(base, range(2000))


def test_a_reader_racing_a_commit_that_deletes_its_segments_opens_the_new_version(base, monkeypatch):
    publish(base, range(2010))
    real = seg.open_file

    def racing(directory, name):  # a commit lands between opening the manifest and its first segment
        monkeypatch.setattr(seg, "open_file", real)
        publish(base, range(1500, 2010))  # the linked whole file is rewritten, then deleted
        return real(directory, name)

    monkeypatch.setattr(seg, "open_file", racing)
    with FeatureFile(base) as f:
        assert len(f.column("train", "paths")) == 408
    check(base, range(1500, 2010))


def test_the_compaction_plan_merges_a_full_tier_rewrites_waste_and_drops_the_dead():
    from pipeline.store.compaction import Run, plan, wasteful

    runs = [Run(100_000, 100_000), Run(0, 50), Run(10, 10), Run(12, 12), Run(9, 9), Run(30, 100), Run(11, 11)]
    groups = plan(runs)
    assert groups == [[0], [2, 3, 4, 6], [5]]  # four runs of tier 1 (4..15 rows) merge; the empty one goes
    assert wasteful(runs[5]) and not wasteful(runs[0])
    assert plan([Run(10, 10)] * 3) == [[0], [1], [2]]  # three of a tier stay apart

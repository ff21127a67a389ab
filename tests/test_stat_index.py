"""The stat index: a rerun reads only the photos whose stat data changed (or are too recent to judge), never
trusts an index that disagrees with the feature file, and `--rehash` reads everything."""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from helpers import make_folder
from pipeline import datasets, extract, statindex
from pipeline.cli import main
from pipeline.datasets import FileStat
from pipeline.hashing import file_sha256
from pipeline.store import FeatureFile

ARGS = dict(backbone="vgg16", image_size=32, weights="none", batch_size=8)
PHOTOS = 8  # train 3 + val 1, two classes


def counting_reads(monkeypatch) -> list[str]:
    """The names of the files hashed from now on."""
    seen: list[str] = []
    real = datasets.file_sha256

    def counting(path):
        seen.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(datasets, "file_sha256", counting)
    return seen


def bmp_folder(tmp_path: Path) -> Path:
    """Photos as BMP files of one size: overwriting one with another's bytes is a same-size edit."""
    return make_folder(tmp_path / "photos", {"train": 3, "val": 1}, ext="bmp")


def row_sha(cache: str, path: str) -> str:
    with FeatureFile(cache) as f:
        split = path.split("/")[0]
        return dict(zip(f.column(split, "paths"), f.column(split, "sha256")))[path]


def replant(cache: str, root: Path, scanned_ns: int, **records: tuple[FileStat, str]) -> Path:
    """Rewrite the stat index of ``cache`` with some records replaced, as someone else could."""
    where = statindex.location(cache)
    index, note = statindex.read(where, root)
    assert index is not None, note
    statindex.write(where, root, {**index.records, **records}, scanned_ns)
    return where


@pytest.fixture
def photos(tmp_path, monkeypatch) -> dict:
    """A folder extracted once; timestamps are compared without a granularity window (see the racy test)."""
    monkeypatch.setattr(statindex, "GRANULARITY_NS", 0)
    root = bmp_folder(tmp_path)
    args = {**ARGS, "cache_dir": str(tmp_path / "cache")}
    first = extract(root, **args)
    assert first["hashed"] == PHOTOS and first["computed"] == PHOTOS
    return {"root": root, "args": args, "cache": first["cache"], "reads": counting_reads(monkeypatch)}


def test_an_unchanged_rerun_reads_no_photo_and_rewrites_nothing(photos):
    cache, index = Path(photos["cache"]), statindex.location(photos["cache"])
    before = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (cache, index)]
    s = extract(photos["root"], **photos["args"])
    assert photos["reads"] == [] and s["hashed"] == 0 and s["computed"] == 0 and s["reused"] == PHOTOS
    assert [(p.stat().st_ino, p.stat().st_mtime_ns) for p in (cache, index)] == before
    assert s["notes"] == []


def test_a_touched_or_edited_photo_is_read_again(photos):
    root, reads = photos["root"], photos["reads"]
    (root / "train" / "red" / "red0.bmp").touch()
    blue0, blue1 = root / "train" / "blue" / "blue0.bmp", root / "train" / "blue" / "blue1.bmp"
    blue0.write_bytes(blue1.read_bytes())  # same size, other content (already in the cache: nothing to compute)
    s = extract(root, **photos["args"])
    assert sorted(reads) == ["blue0.bmp", "red0.bmp"] and s["hashed"] == 2 and s["computed"] == 0
    assert row_sha(s["cache"], "train/blue/blue0.bmp") == file_sha256(blue1)
    reads.clear()
    assert extract(root, **photos["args"])["hashed"] == 0 and reads == []


def test_a_renamed_photo_is_read_once_and_its_row_follows(photos):
    root, reads = photos["root"], photos["reads"]
    old, new = root / "train" / "red" / "red2.bmp", root / "train" / "red" / "renamed.bmp"
    sha = file_sha256(old)
    old.rename(new)
    s = extract(root, **photos["args"])
    assert reads == ["renamed.bmp"] and s["computed"] == 0 and s["removed"] == 0
    assert row_sha(s["cache"], "train/red/renamed.bmp") == sha
    reads.clear()
    assert extract(root, **photos["args"])["hashed"] == 0 and reads == []


def test_rehash_reads_every_photo(photos):
    result = CliRunner().invoke(main, ["extract", str(photos["root"]), "--backbone", "vgg16", "--image-size", "32",
                                       "--weights", "none", "--cache-dir", photos["args"]["cache_dir"],
                                       "--rehash", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["hashed"] == PHOTOS and summary["computed"] == 0 and len(photos["reads"]) == PHOTOS


def test_an_edit_within_the_granularity_is_read_again_and_rehash_catches_older_ones(tmp_path, monkeypatch):
    root = bmp_folder(tmp_path)
    args = {**ARGS, "cache_dir": str(tmp_path / "cache")}
    cache = extract(root, **args)["cache"]
    reads = counting_reads(monkeypatch)
    assert extract(root, **args)["hashed"] == PHOTOS  # all made within 2 s of the first scan: none is vouched for
    assert sorted(reads) == sorted(p.name for p in root.rglob("*.bmp"))

    blue0, blue1 = root / "train" / "blue" / "blue0.bmp", root / "train" / "blue" / "blue1.bmp"
    before, original = file_sha256(blue0), blue0.read_bytes()
    blue0.write_bytes(blue1.read_bytes())
    edited = FileStat.of(blue0.stat())
    # as if the edit had landed in the timestamp tick of the last read: the index holds today's stat data
    # with yesterday's sha256, and its scan began within the granularity of the photo's times
    replant(cache, root, edited.ctime_ns + statindex.GRANULARITY_NS // 2, **{"train/blue/blue0.bmp": (edited, before)})
    reads.clear()
    extract(root, **args)
    assert "blue0.bmp" in reads and row_sha(cache, "train/blue/blue0.bmp") == file_sha256(blue1)

    # the same record from a scan that began well after the photo's times is trusted: that is what --rehash is for
    blue0.write_bytes(original)
    extract(root, **args)  # the feature file holds the photo's first sha256 again
    blue0.write_bytes(blue1.read_bytes())
    edited = FileStat.of(blue0.stat())
    replant(cache, root, edited.ctime_ns + 2 * statindex.GRANULARITY_NS, **{"train/blue/blue0.bmp": (edited, before)})
    reads.clear()
    assert extract(root, **args)["hashed"] == 0 and row_sha(cache, "train/blue/blue0.bmp") == before
    s = extract(root, rehash=True, **args)
    assert s["hashed"] == PHOTOS and row_sha(cache, "train/blue/blue0.bmp") == file_sha256(blue1)
    assert any("1 photo(s) had changed" in n for n in s["notes"]), s["notes"]


def test_a_planted_entry_cannot_give_a_photo_another_photos_hash(photos):
    root, reads = photos["root"], photos["reads"]
    blue0, red0 = root / "train" / "blue" / "blue0.bmp", root / "train" / "red" / "red0.bmp"
    truth = file_sha256(blue0)
    where = replant(photos["cache"], root, time.time_ns(),
                    **{"train/blue/blue0.bmp": (FileStat.of(blue0.stat()), file_sha256(red0))})
    s = extract(root, **photos["args"])
    assert reads == ["blue0.bmp"] and row_sha(s["cache"], "train/blue/blue0.bmp") == truth
    assert any(str(where) in n and "disagrees" in n for n in s["notes"]), s["notes"]


def test_an_entry_the_feature_file_does_not_hold_is_read(photos):
    root, reads = photos["root"], photos["reads"]
    extra = root / "train" / "red" / "extra.bmp"
    extra.write_bytes((root / "train" / "red" / "red0.bmp").read_bytes())
    made_up = "0" * 64
    replant(photos["cache"], root, time.time_ns(), **{"train/red/extra.bmp": (FileStat.of(extra.stat()), made_up)})
    s = extract(root, **photos["args"])
    assert reads == ["extra.bmp"] and row_sha(s["cache"], "train/red/extra.bmp") != made_up


def _garbage(path: Path) -> None:
    path.write_bytes(b"not an index")


def _edit(change):
    def edit(path: Path) -> None:
        with h5py.File(path, "a") as f:
            change(f)
    return edit


def _replace(name: str, values) -> callable:
    def change(f: h5py.File) -> None:
        new = values(f)
        del f[name]
        f[name] = new
    return change


def _declared_only(name: str) -> callable:
    def change(f: h5py.File) -> None:
        rows = f[name].shape[0]
        del f[name]
        f.create_dataset(name, shape=(rows,), dtype="i8")  # nothing written: no storage allocated
    return change


CRAFTED = {  # kind: (how, what the note says)
    "not HDF5": (_garbage, "not an HDF5 file"),
    "another folder": (_edit(lambda f: f.attrs.__setitem__("dataset_root", "/elsewhere")), "made for '/elsewhere'"),
    "sha256 not hex": (_edit(lambda f: f["sha256"].__setitem__(0, b"z" * 64)), "not 64 hex digits"),
    "path leaving the root": (_edit(_replace("path", lambda f: np.array(["../../secret.bmp"] * f["path"].shape[0],
                                                                           dtype=h5py.string_dtype()))),
                              "not a plain path inside the dataset root"),
    "path listed twice": (_edit(_replace("path", lambda f: np.array([f["path"].asstr()[0]] * f["path"].shape[0],
                                                                      dtype=h5py.string_dtype()))),
                          "listed twice"),
    "column in another file": (_edit(_replace("sha256", lambda f: h5py.ExternalLink("/tmp/other.h5", "/sha256"))),
                               "links to other files"),
    "rows declared, not stored": (_edit(_declared_only("size")), "declares rows the file does not hold"),
}


@pytest.mark.parametrize("kind", sorted(CRAFTED))
def test_a_malformed_index_is_ignored_with_a_note_and_rebuilt(photos, kind):
    where = statindex.location(photos["cache"])
    craft, reason = CRAFTED[kind]
    craft(where)
    s = extract(photos["root"], **photos["args"])
    assert s["hashed"] == PHOTOS and s["computed"] == 0
    assert any(n.startswith(f"ignoring the stat index {where}") and reason in n for n in s["notes"]), s["notes"]
    photos["reads"].clear()
    again = extract(photos["root"], **photos["args"])
    assert again["hashed"] == 0 and again["notes"] == []


def test_a_write_that_fails_midway_leaves_the_previous_index(photos):
    where = statindex.location(photos["cache"])
    before = where.read_bytes()
    index, _ = statindex.read(where, photos["root"])
    broken = {**index.records, "train/red/x.bmp": (FileStat("large", 0, 0, 0), "0" * 64)}  # fails after /path
    with pytest.raises(ValueError):
        statindex.write(where, photos["root"], broken, time.time_ns())
    assert where.read_bytes() == before and [p.name for p in where.parent.iterdir()] == [where.name]


import pytest

from pipeline import datasets
from pipeline.errors import PipelineError
from helpers import make_folder, make_image


def test_split_folders_and_validation_alias(tmp_path):
    root = make_folder(tmp_path / "d", {"train": 2, "validation": 1, "test": 1})
    (root / "notes.txt").write_text("stray file at the root")
    (root / "train" / "red" / "readme.md").write_text("not an image")
    m = datasets.scan(root)
    assert m.classes == ["blue", "red"]
    assert m.splits == ["train", "val", "test"]
    assert len(m.split("train")) == 4 and len(m.split("val")) == 2 and len(m.split("test")) == 2
    assert all(e.path.startswith("validation/") for e in m.split("val"))


def test_class_folders_carved_stably(tmp_path):
    root = make_folder(tmp_path / "flat", {"": 30})
    a = datasets.scan(root, val_fraction=0.2, test_fraction=0.1)
    b = datasets.scan(root, val_fraction=0.2, test_fraction=0.1)
    assert [(e.path, e.split) for e in a.entries] == [(e.path, e.split) for e in b.entries]
    assert {e.split for e in a.entries} == {"train", "val", "test"}
    assert 4 <= len(a.split("val")) <= 24  # 20% of 60, loosely


def test_missing_class_in_split_is_a_warning(tmp_path):
    root = make_folder(tmp_path / "d", {"train": 2, "val": 1})
    for f in (root / "val" / "red").iterdir():
        f.unlink()
    (root / "val" / "red").rmdir()
    m = datasets.scan(root)
    assert m.classes == ["blue", "red"]
    assert any("val" in w and "red" in w for w in m.warnings)


def test_missing_directory_names_it(tmp_path):
    with pytest.raises(PipelineError, match="not found: .*nowhere"):
        datasets.scan(tmp_path / "nowhere")


def test_hashes_are_content_hashes(tmp_path):
    root = tmp_path / "d"
    make_image(root / "train" / "a" / "x.png", (1, 2, 3), 1)
    (root / "train" / "a" / "y.png").write_bytes((root / "train" / "a" / "x.png").read_bytes())
    m = datasets.hash_files(datasets.scan(root))
    assert len({e.sha256 for e in m.entries}) == 1 and len(m.entries[0].sha256) == 64

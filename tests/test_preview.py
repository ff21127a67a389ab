"""transfer preview: a labelled grid, with augmented views beside each image."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from helpers import make_folder
from pipeline import PipelineError
from pipeline.cli import main
from pipeline.previewing import preview


def test_grid_takes_classes_in_turn_and_draws_one_cell_per_image(tiny_data, tmp_path):
    r = preview(tiny_data, count=3, output=tmp_path / "g.png", image_size=32)
    assert [i["label"] for i in r["images"]] == ["blue", "red", "blue"]
    assert r["policy"] == "none" and r["views"] == 0
    with Image.open(r["output"]) as im:
        assert im.width > 150 and im.height > 100


def test_augmented_grid_is_wider_and_reproducible(tiny_data, tmp_path):
    plain = preview(tiny_data, count=2, output=tmp_path / "p.png", image_size=32)
    a = preview(tiny_data, count=2, augment="flip,rotate=0.2", views=3, output=tmp_path / "a.png", image_size=32)
    b = preview(tiny_data, count=2, augment="flip,rotate=0.2", views=3, output=tmp_path / "b.png", image_size=32)
    assert a["views"] == 3 and a["policy"] == "flip=horizontal,rotate=0.2"
    with Image.open(a["output"]) as ia, Image.open(b["output"]) as ib, Image.open(plain["output"]) as ip:
        assert ia.width > 1.5 * ip.width
        assert np.array_equal(np.asarray(ia), np.asarray(ib))


def test_unreadable_images_are_listed_not_fatal(tmp_path):
    root = make_folder(tmp_path / "d", {"train": 2})
    (root / "train" / "blue" / "blue0.png").write_text("not an image")
    r = preview(root, count=4, output=tmp_path / "g.png", image_size=32)
    assert [s["path"] for s in r["skipped"]] == ["train/blue/blue0.png"] and len(r["images"]) == 3


def test_missing_split_names_the_ones_present(tiny_data, tmp_path):
    root = make_folder(tmp_path / "d", {"train": 1})
    with pytest.raises(PipelineError, match=r"no val images \(it has: train\)"):
        preview(root, split="val", output=tmp_path / "g.png")


def test_cli_preview(tiny_data, tmp_path):
    out = tmp_path / "grid.png"
    ok = CliRunner().invoke(main, ["preview", str(tiny_data), "--augment", "default", "--count", "2",
                                   "--views", "2", "--image-size", "32", "--output", str(out)])
    assert ok.exit_code == 0, ok.output
    assert out.is_file() and "2 views each (flip=horizontal,rotate=0.1,zoom=0.2)" in ok.output
    bad = CliRunner().invoke(main, ["preview", str(tiny_data), "--augment", "twirl", "--output", str(out)])
    assert bad.exit_code == 2 and "unknown augmentation 'twirl'" in bad.output

"""Folders nobody curated: every file with an image extension ends up in the features or in
``skipped`` (and ``/errors``) with a reason a person understands; never a crash, never a gap."""

from __future__ import annotations

import io
import json
import os
import resource
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pipeline import datasets, extract
from pipeline.cli import main
from pipeline.images import load_image
from pipeline.store import FeatureFile
from helpers import make_image

READABLE = ["alpha.png", "anim.gif", "gray16.png", "gray.jpg", "cmyk.jpg", "pic.bmp", "pic.webp", "ok.png",
            "link.png", "with space ü é.png"]
# path relative to the root -> a word the reason must contain
UNUSABLE = {
    "train/cat/empty.jpg": "empty",
    "train/cat/truncated.jpg": "truncated",
    "train/cat/page.jpg": "not an image",
    "train/cat/bomb.png": "decompression bomb",
    "train/cat/dangling.png": "broken symbolic link",
    "train/cat/loop_a.jpg": "loop",
    "train/cat/loop_b.jpg": "loop",
    "train/cat/fifo.jpg": "not a regular file",
    "train/cat/.hidden.png": "hidden",
    "train/cat/caf\ufffd.png": "not valid UTF-8",
    "train/cat/.ipynb_checkpoints/copy.png": "hidden",
    "train/stray.png": "class folder",
    "extra/e.png": "not a split folder",
}


def _jpeg_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def odd(tmp_path: Path) -> Path:
    """train/cat holds one of each odd kind; train/dog is empty; bird is only in val; val/cat/leak.png
    is a copy of a train file."""
    root = tmp_path / "odd"
    cat = root / "train" / "cat"
    make_image(cat / "ok.png", (200, 50, 40), 1)
    (cat / "empty.jpg").write_bytes(b"")
    (cat / "truncated.jpg").write_bytes(_jpeg_bytes(0)[:6000])
    (cat / "page.jpg").write_text("<!doctype html><html><body>404 Not Found</body></html>")
    frames = [Image.new("RGB", (40, 40), c) for c in ("red", "green")]
    frames[0].save(cat / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    Image.new("RGBA", (40, 40), (10, 20, 30, 0)).save(cat / "alpha.png")
    Image.fromarray(np.full((40, 40), 32768, np.uint16)).save(cat / "gray16.png")
    Image.new("L", (40, 40), 128).save(cat / "gray.jpg")
    Image.new("CMYK", (40, 40), (0, 0, 0, 0)).save(cat / "cmyk.jpg")
    Image.new("RGB", (40, 40), "blue").save(cat / "pic.bmp")
    Image.new("RGB", (40, 40), "blue").save(cat / "pic.webp")
    Image.new("1", (20000, 20000)).save(cat / "bomb.png", optimize=True)  # ~50 KB on disk, 400 megapixels
    make_image(cat / "with space ü é.png", (1, 2, 3), 2)
    make_image(cat / ".hidden.png", (1, 2, 3), 3)
    make_image(cat / ".ipynb_checkpoints" / "copy.png", (1, 2, 3), 4)
    os.symlink("ok.png", cat / "link.png")
    os.symlink("loop_b.jpg", cat / "loop_a.jpg")
    os.symlink("loop_a.jpg", cat / "loop_b.jpg")
    os.symlink("missing.png", cat / "dangling.png")
    os.symlink(".", cat / "dirloop")
    os.mkfifo(cat / "fifo.jpg")
    (cat / os.fsdecode(b"caf\xe9.png")).write_bytes(_jpeg_bytes(1))  # a Latin-1 name, as in old zip files
    (root / "train" / "dog").mkdir()
    make_image(root / "train" / "stray.png", (0, 9, 0), 5)
    make_image(root / "extra" / "e.png", (0, 9, 0), 6)
    make_image(root / "val" / "bird" / "b.png", (0, 90, 0), 7)
    make_image(root / "val" / "cat" / "c.png", (0, 0, 90), 8)
    (root / "val" / "cat" / "leak.png").write_bytes((cat / "with space ü é.png").read_bytes())
    return root


def _image_files_on_disk(root: Path) -> set[str]:
    """Every file with an image extension, found without following links (hidden ones too)."""
    found = set()
    for dirpath, _, files in os.walk(root):
        for name in files:
            if os.path.splitext(name)[1].lower() in datasets.IMAGE_EXTENSIONS:
                rel = Path(dirpath, name).relative_to(root).as_posix()
                found.add(rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    return found


def test_every_image_file_is_used_or_skipped_with_a_reason(odd, fast_args):
    s = extract(odd, **fast_args)
    with FeatureFile(s["cache"]) as f:
        stored = {p for split in f.splits for p in f.column(split, "paths")}
        errors = {e["path"]: e["reason"] for e in f.errors()}
    reasons = {x["path"]: x["reason"] for x in s["skipped"]}
    assert errors == reasons  # /errors in the file is the same list
    assert stored == {f"train/cat/{n}" for n in READABLE} | {"val/bird/b.png", "val/cat/c.png", "val/cat/leak.png"}
    assert not stored & set(reasons)
    assert _image_files_on_disk(odd) <= stored | set(reasons)  # no silent gap
    for path, word in UNUSABLE.items():
        assert word in reasons[path], (path, reasons[path])
    assert set(reasons) == set(UNUSABLE)


def test_warnings_empty_class_one_split_class_and_leakage(odd, fast_args):
    s = extract(odd, **fast_args)
    warnings = s["warnings"]
    assert any("dog" in w and "train" in w for w in warnings)  # empty class folder
    assert any("bird" in w and "train" in w for w in warnings)  # class only in val
    assert any("train/cat/dirloop" in w and "--follow-links" in w for w in warnings)  # a folder link, not followed
    leaks = [w for w in warnings if "leakage" in w]
    assert len(leaks) == 1 and "val/cat/leak.png" in leaks[0]


def test_exit_code_zero_with_skips_and_non_zero_with_strict(odd, tmp_path):
    args = ["extract", str(odd), "--backbone", "mobilenet_025", "--image-size", "32", "--weights", "none",
            "--cache-dir", str(tmp_path / "c"), "--json"]
    runner = CliRunner()
    ok = runner.invoke(main, args)
    assert ok.exit_code == 0, ok.output
    summary = json.loads(ok.stdout)
    assert {x["path"] for x in summary["skipped"]} == set(UNUSABLE)
    assert summary["splits"] == {"train": len(READABLE), "val": 3}
    strict = runner.invoke(main, args + ["--strict"])
    assert strict.exit_code == 1
    assert json.loads(strict.stdout)["computed"] == 0  # the rerun still reused everything before failing


def test_odd_modes_decode_to_the_right_colours(odd):
    cat = odd / "train" / "cat"

    def pixel(name: str) -> list[int]:
        pixels, reason = load_image(str(cat / name), 8)
        assert reason == "" and pixels.shape == (8, 8, 3) and pixels.dtype == np.uint8
        return pixels[4, 4].tolist()

    assert pixel("alpha.png") == [255, 255, 255]  # transparent -> white, not black
    assert abs(pixel("gray16.png")[0] - 128) <= 1  # 16-bit mid-grey scaled, not clipped to white
    assert pixel("cmyk.jpg") == [255, 255, 255]  # CMYK no ink -> white
    assert pixel("anim.gif")[0] > 200 and pixel("anim.gif")[1] < 50  # the first (red) frame
    assert pixel("gray.jpg") == [128, 128, 128]


def test_decompression_bomb_is_refused_without_allocating_it(odd):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pixels, reason = load_image(str(odd / "train" / "cat" / "bomb.png"), 32)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert pixels is None and "20000x20000" in reason
    assert grown_mb < 100  # decoding it would take 400 MB (1 bit -> 1 byte per pixel) or more


def test_a_folder_with_no_usable_image_is_an_error_not_an_empty_cache(tmp_path, fast_args):
    root = tmp_path / "junk"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.jpg").write_bytes(b"")
    r = CliRunner().invoke(main, ["extract", str(root), "--cache-dir", fast_args["cache_dir"]])
    assert r.exit_code == 2 and "no image files found" in r.output and "empty file" in r.output


def test_only_undecodable_images_commit_an_empty_split_with_errors(tmp_path, fast_args):
    root = tmp_path / "bad"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.jpg").write_text("<html></html>")
    s = extract(root, **fast_args)
    assert s["splits"] == {"train": 0} and [x["path"] for x in s["skipped"]] == ["a/x.jpg"]
    with FeatureFile(s["cache"]) as f:
        assert len(f.column("train", "labels")) == 0 and [e["path"] for e in f.errors()] == ["a/x.jpg"]


def test_a_decoder_crash_on_one_file_does_not_stop_the_run(tiny_data, fast_args, monkeypatch):
    import struct

    import pipeline.images

    real_open = pipeline.images.Image.open

    def fragile_open(path, *args, **kwargs):
        if str(path).endswith("red3.png"):
            raise struct.error("unpack requires a buffer of 4 bytes")  # as from a crafted EXIF block
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(pipeline.images.Image, "open", fragile_open)
    s = extract(tiny_data, **fast_args)
    assert s["splits"]["train"] == 11 and s["computed"] == 21
    assert s["skipped"] == [{"path": "train/red/red3.png",
                             "reason": "damaged image data (error: unpack requires a buffer of 4 bytes)"}]

"""The HTML report: one self-contained file, every picture embedded, and it renders in a real browser."""

import base64
import io
import json
import os
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import DENSE_FAST, FAST_ARGS, make_folder, make_image, needs_shared
from PIL import Image

import pipeline
from pipeline.cli import main
from pipeline.training import compare

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Sources(HTMLParser):
    """Every src/href of a page."""

    def __init__(self):
        super().__init__()
        self.images, self.links = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("href", "src"):
            if key in attrs and tag != "img":
                self.links.append(attrs[key])


def sources(page: Path) -> Sources:
    parser = Sources()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def decode(uri: str) -> Image.Image:
    header, payload = uri.split(",", 1)
    assert header in ("data:image/png;base64", "data:image/jpeg;base64"), header
    image = Image.open(io.BytesIO(base64.b64decode(payload)))
    image.load()
    return image


def build_runs(tmp: Path) -> list[str]:
    """logreg and dense runs on a tiny cache (photos in ``tmp/d``) whose val holds two red pictures filed as blue."""
    root = make_folder(tmp / "d", {"train": 6, "val": 3})
    for i in range(2):
        make_image(root / "val" / "blue" / f"really_red{i}.png", (200, 50, 40), 100 + i)
    cache = pipeline.extract(root, **FAST_ARGS, cache_dir=str(tmp / "cache"))["cache"]
    return [r["run_dir"] for r in compare(cache, ["logreg", "dense"], runs_root=str(tmp / "runs"), options=DENSE_FAST)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[str]:
    """:func:`build_runs` once for the tests that only read the runs."""
    return build_runs(tmp_path_factory.mktemp("report"))


def test_report_embeds_every_picture_and_shows_the_mistakes(runs, tmp_path):
    result = pipeline.write_report(runs, tmp_path / "out" / "report.html")
    page = Path(result["report"])
    assert result["runs"] == 2 and page.stat().st_size == result["bytes"]
    found = sources(page)
    assert found.links == ["#" + Path(r).name for r in runs]  # only in-page anchors, nothing to fetch
    pictures = [decode(uri) for uri in found.images]
    # confusion matrices of both runs, the dense curves, and thumbnails of the misclassified images
    assert len(pictures) >= 3 + 2 * 2
    text = page.read_text(encoding="utf-8")
    assert "val/blue/really_red0.png" in text and "predicted red" in text
    assert "logreg" in text and "dense" in text and "Audit of" in text


def test_report_works_after_the_photos_are_gone(tmp_path):
    runs = build_runs(tmp_path)
    shutil.rmtree(tmp_path / "d")
    page = Path(pipeline.write_report(runs, tmp_path / "report.html")["report"])
    assert all(decode(uri).size == (128, 128) for uri in sources(page).images if uri.startswith("data:image/jpeg"))


def test_report_command_and_errors(runs, tmp_path):
    runner = CliRunner()
    out = tmp_path / "r.html"
    result = runner.invoke(main, ["report", *runs, "--output", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["report"] == str(out) and out.is_file()
    bad = runner.invoke(main, ["report", str(tmp_path), "--output", str(tmp_path / "x.html")])
    assert bad.exit_code == 2 and "not a run directory" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "x.html").exists()


def screenshot(page: Path, tmp_path: Path) -> np.ndarray:
    """Render ``page`` in headless Chromium, return the screenshot's pixels (the browser is always ended)."""
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
           page.resolve().as_uri()]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("chromium did not finish rendering within 90 s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert shot.is_file(), "chromium wrote no screenshot"
    with Image.open(shot) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package `chromium`)")
def test_report_renders_in_headless_chromium(runs, tmp_path):
    page = Path(pipeline.write_report(runs, tmp_path / "report.html")["report"])
    pixels = screenshot(page, tmp_path)
    assert pixels.shape[:2] == (2000, 1200)
    assert pixels.std() > 20, "the screenshot is blank"
    colourful = (pixels.max(axis=2) - pixels.min(axis=2)) > 60  # the plots and photos, not black-on-white text
    assert colourful.mean() > 0.01


@needs_shared
def test_report_of_a_real_run_is_one_file_with_the_audit(tmp_path, shared_extracts):
    cache = shared_extracts("urban_rural", backbone="mobilenet_025", image_size=96)["cache"]
    rows = compare(cache, ["logreg"], runs_root=str(tmp_path / "runs"))
    page = Path(pipeline.write_report([rows[0]["run_dir"]], tmp_path / "report.html")["report"])
    found = sources(page)
    assert all(decode(uri) for uri in found.images) and len(found.images) >= 3  # confusion + the two copies
    assert all(link.startswith("#") for link in found.links)
    text = page.read_text(encoding="utf-8")
    assert "exact duplicates: 1" in text and "train/rural/rural22.jpeg" in text and "train/rural/rural8.jpeg" in text
    assert "Map of the features" in text and "<h3>outliers: 20</h3>" in text and "<h3>label issues: " in text
    assert len(found.images) >= 3 + 1 + 20  # confusion, the copies, the map, a thumbnail per outlier


def test_report_maps_the_features_and_marks_the_findings(runs, tmp_path):
    page = Path(pipeline.write_report(runs, tmp_path / "report.html")["report"])
    text = page.read_text(encoding="utf-8")
    uri = text.split('alt="feature map"')[0].rsplit('src="', 1)[1].split('"')[0]
    feature_map = np.asarray(decode(uri).convert("RGB"), dtype=np.float32)
    assert feature_map.shape[0] > 300 and feature_map.shape[1] > 300
    colourful = (feature_map.max(axis=2) - feature_map.min(axis=2)) > 60
    assert colourful.sum() > 100  # the dots of the classes show, under the outlier crosses of this tiny set
    assert "<h3>outliers: 20</h3>" in text and "score: distance to the nearest images" in text
    assert "transfer relabel DATA_DIR fixes.csv" in text


def test_compare_writes_the_report_too(tmp_path, fast_args):
    cache = pipeline.extract(make_folder(tmp_path / "d", {"train": 4, "val": 2}), **fast_args)["cache"]
    out = tmp_path / "compare.html"
    result = CliRunner().invoke(main, ["compare", cache, "--heads", "logreg,knn", "--runs-root", str(tmp_path / "runs"),
                                       "--report", str(out), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    text = out.read_text(encoding="utf-8")
    assert all(Path(r["run_dir"]).name in text for r in rows) and len(rows) == 2
    assert all(decode(uri) for uri in sources(out).images)

"""Audit: exact duplicates, label conflicts, cross-split leakage and near copies, on synthetic and real folders."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import SHARED_WEIGHTS, make_folder, needs_shared
from PIL import Image, ImageDraw

import pipeline
from pipeline.audit import KINDS
from pipeline.datasets import Entry
from pipeline.exact_copies import exact_groups
from pipeline.cli import main


def make_structured(path: Path, seed: int, size: tuple[int, int] = (160, 128)) -> Path:
    """A gradient with a few random ellipses and rectangles: a picture a real backbone can tell apart."""
    rng = np.random.default_rng(seed)
    w, h = size
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, w)[None, :, None] if seed % 2 else np.linspace(0, 1, h)[:, None, None]
    im = Image.fromarray(((c0 * (1 - t) + c1 * t) * np.ones((h, w, 1))).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(4):
        x0, y0 = rng.integers(0, w - 20), rng.integers(0, h - 20)
        box = (x0, y0, x0 + rng.integers(10, 40), y0 + rng.integers(10, 40))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


def planted(root: Path) -> Path:
    """Distinct pictures in train/test x a/b, plus one finding of each kind."""
    n = 0
    for split, count in (("train", 5), ("test", 2)):
        for label in ("a", "b"):
            for i in range(count):
                n += 1
                make_structured(root / split / label / f"{label}{i}.png", n)
    shutil.copy(root / "train/a/a0.png", root / "train/a/a0_copy.png")           # exact duplicate
    shutil.copy(root / "train/a/a1.png", root / "train/b/from_a1.png")           # label conflict
    shutil.copy(root / "train/a/a2.png", root / "test/a/leak.png")               # cross split
    with Image.open(root / "train/a/a3.png") as im:                              # near duplicate
        im.resize((120, 96)).convert("RGB").save(root / "train/a/a3_small.jpg", quality=85)
    return root


def paths(groups: list[list[dict]]) -> list[list[str]]:
    return [[g["path"] for g in group] for group in groups]


def test_exact_groups_sorts_each_kind():
    images = [Entry("test", "a", "test/a/x.png", "s1"), Entry("train", "a", "train/a/x.png", "s1"),
              Entry("train", "a", "train/a/y.png", "s2"), Entry("train", "a", "train/a/z.png", "s2"),
              Entry("train", "b", "train/b/w.png", "s2"), Entry("val", "b", "val/b/u.png", "s3")]
    found = exact_groups(images)
    assert paths(found["exact_duplicates"]) == [["train/a/y.png", "train/a/z.png"]]
    assert paths(found["label_conflicts"]) == [["train/a/y.png", "train/a/z.png", "train/b/w.png"]]
    assert paths(found["cross_split"]) == [["train/a/x.png", "test/a/x.png"]]
    assert found["cross_split"][0][1] == {"path": "test/a/x.png", "split": "test", "class": "a"}


@pytest.fixture(scope="module")
def planted_cache(tmp_path_factory) -> dict[str, str]:
    """The planted folder extracted with the real MobileNet 0.25 at 96 px, pooled and as raw maps."""
    tmp = tmp_path_factory.mktemp("audit")
    root = planted(tmp / "planted")
    return {pooling: pipeline.extract(root, backbone="mobilenet_025", image_size=96, pooling=pooling,
                                      weights_dir=str(SHARED_WEIGHTS), cache_dir=str(tmp / "cache"))["cache"]
            for pooling in ("avg", "none")}


@needs_shared
@pytest.mark.parametrize("pooling", ["avg", "none"])
def test_audit_finds_each_planted_kind_and_nothing_else(planted_cache, pooling, tmp_path):
    found = pipeline.audit_cache(planted_cache[pooling], output=tmp_path / "sheets")
    assert found["images"] == 18
    assert paths(found["exact_duplicates"]) == [["train/a/a0.png", "train/a/a0_copy.png"]]
    assert paths(found["label_conflicts"]) == [["train/a/a1.png", "train/b/from_a1.png"]]
    assert paths(found["cross_split"]) == [["train/a/a2.png", "test/a/leak.png"]]
    assert paths(found["near_duplicates"]) == [["train/a/a3.png", "train/a/a3_small.jpg"]]
    assert found["near_duplicates"][0][0]["similarity"] >= 0.97
    names = [Path(s).name for s in found["sheets"]]
    assert names[:4] == [f"{k}-001.png" for k in KINDS] and names[-1] == "outliers.png"
    with Image.open(found["sheets"][0]) as sheet:
        assert sheet.width > 2 * 192 and np.asarray(sheet).std() > 10


@needs_shared
def test_near_copy_across_classes_is_a_label_conflict_and_threshold_matters(planted_cache):
    strict = pipeline.audit_cache(planted_cache["avg"], threshold=0.9999)
    assert strict["near_duplicates"] == []
    loose = pipeline.audit_cache(planted_cache["avg"], threshold=0.5)
    assert len(loose["near_duplicates"]) > 1
    assert any(g[0]["class"] != g[1]["class"] and "similarity" in g[0] for g in loose["label_conflicts"])


def test_extract_warns_once_per_kind_of_stored_copy(tmp_path, fast_args):
    root = make_folder(tmp_path / "d", {"train": 2, "test": 1})
    clean = pipeline.extract(root, **fast_args)
    assert not any("byte-identical" in w for w in clean["warnings"])
    shutil.copy(root / "train/red/red0.png", root / "test/red/leak.png")
    shutil.copy(root / "train/red/red1.png", root / "train/blue/mislabelled.png")
    warned = pipeline.extract(root, **fast_args)["warnings"]
    leak = [w for w in warned if "more than one split" in w]
    conflict = [w for w in warned if "more than one class" in w]
    assert len(leak) == 1 and "train/red/red0.png = test/red/leak.png" in leak[0]
    assert len(conflict) == 1 and "train/red/red1.png" in conflict[0]


def test_audit_command_json_and_errors(tmp_path, fast_args):
    root = make_folder(tmp_path / "d", {"train": 2})
    shutil.copy(root / "train/blue/blue0.png", root / "train/blue/again.png")
    cache = pipeline.extract(root, **fast_args)["cache"]
    runner = CliRunner()
    result = runner.invoke(main, ["audit", cache, "--threshold", "1.0", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert set(KINDS) <= set(found)
    assert paths(found["exact_duplicates"]) == [["train/blue/again.png", "train/blue/blue0.png"]]
    text = runner.invoke(main, ["audit", cache, "--threshold", "1.0"]).stdout
    assert "exact duplicates: 1" in text and "train/blue/again.png [train/blue]" in text
    bad = runner.invoke(main, ["audit", cache, "--threshold", "1.5"])
    assert bad.exit_code == 2 and "must be a cosine similarity" in bad.output and "Traceback" not in bad.output
    missing = runner.invoke(main, ["audit", str(tmp_path / "nope.h5")])
    assert missing.exit_code == 2 and "run `transfer extract` first" in missing.output


@needs_shared
def test_urban_rural_rural22_and_rural8_are_identical(tmp_path, shared_extracts):
    shared = Path(shared_extracts("urban_rural", backbone="mobilenet_025", image_size=96)["cache"])
    copy = shared_extracts.seed(tmp_path, {"cache": shared}) / shared.parent.name / shared.name
    found = pipeline.audit_cache(copy)  # saves its findings beside the file it audits
    assert ["train/rural/rural22.jpeg", "train/rural/rural8.jpeg"] in paths(found["exact_duplicates"])


def test_class_folders_carved_by_fraction(tmp_path, fast_args):
    root = make_folder(tmp_path / "flowers", {"": 6})
    shutil.copy(root / "red/red0.png", root / "blue/filed_twice.png")
    shutil.copy(root / "blue/blue1.png", root / "blue/blue1 copy.png")
    cache = pipeline.extract(root, val_fraction=0.5, **fast_args)["cache"]
    found = pipeline.audit_cache(cache, threshold=1.0)
    assert [sorted(p) for p in paths(found["label_conflicts"])] == [["blue/filed_twice.png", "red/red0.png"]]
    copies = found["exact_duplicates"] + found["cross_split"]
    assert ["blue/blue1 copy.png", "blue/blue1.png"] in [sorted(p) for p in paths(copies)]


def blobs(n: int = 60, flips: int = 4, seed: int = 0):
    """Two clusters of non-negative vectors (like pooled ReLU features) with a tail of hard examples drawn
    towards the other class, as real photos have; the first ``flips`` images of class 0 are filed as 1."""
    from pipeline.audit.vectors import Rows

    rng = np.random.default_rng(seed)
    centres = np.abs(rng.normal(0, 1, (2, 256)))
    y = np.repeat([0, 1], n)
    own = 1.0 - 0.5 * rng.beta(1, 5, 2 * n)[:, None]
    own[:flips] = 1.0  # the flipped images are typical of their true class
    X = np.abs(own * centres[y] + (1 - own) * centres[1 - y] + rng.normal(0, 0.5, (2 * n, 256)))
    given = y.copy()
    given[:flips] = 1
    images = [Entry("train", "ab"[c], f"train/{'ab'[c]}/{i}.png", f"sha{i}") for i, c in enumerate(given)]
    return Rows(images, np.zeros(2 * n, int), given, X.astype(np.float32)), y


def test_label_issues_are_the_flips_with_their_true_class():
    from pipeline.audit.labels import find_label_issues
    from pipeline.audit.vectors import Rows

    rows, truth = blobs()
    views = Rows(rows.images + rows.images[:10], np.r_[rows.views, np.ones(10, int)], np.r_[rows.labels, rows.labels[:10]],
                 np.r_[rows.vectors, rows.vectors[:10] * 1.01])  # augmented views of ten images: trained on, not scored
    found = find_label_issues(views, ["a", "b"])
    assert sorted(x["path"] for x in found) == [f"train/b/{i}.png" for i in range(4)]
    assert all(x["suggested"] == "a" and x["class"] == "b" and 0.5 < x["score"] <= 1 for x in found)
    assert find_label_issues(Rows(rows.images[:3], rows.views[:3], rows.labels[:3], rows.vectors[:3]), ["a", "b"]) == []


def test_outlier_score_puts_a_foreign_vector_first():
    from pipeline.audit.outliers import find_outliers, outlier_scores
    from pipeline.audit.vectors import Rows

    rows, _ = blobs()
    foreign = np.zeros(256, np.float32)
    foreign[::7] = 3.0  # a direction neither cluster has
    rows = Rows(rows.images + [Entry("train", "a", "train/a/flower.png", "shaf")], np.r_[rows.views, 0],
                np.r_[rows.labels, 0], np.r_[rows.vectors, foreign[None]])
    scores = outlier_scores(rows.vectors, rows.labels)
    assert scores.argmax() == len(scores) - 1 and scores[-1] > 1.5 and np.median(scores) == pytest.approx(1.0)
    top = find_outliers(rows, top=3)
    assert [x["path"] for x in top][:1] == ["train/a/flower.png"] and len(top) == 3 and top[0]["suggested"] is None
    assert find_outliers(rows, top=None, min_score=1.5) == [x for x in find_outliers(rows, top=None) if x["score"] >= 1.5]


def test_audit_command_ranked_lists_and_options(tmp_path, fast_args):
    root = make_folder(tmp_path / "d", {"train": 6, "val": 3, "test": 2})
    cache = pipeline.extract(root, **fast_args)["cache"]
    runner = CliRunner()
    full = json.loads(runner.invoke(main, ["audit", cache, "--json"]).stdout)
    assert full["splits"] == ["train", "val"] and len(full["outliers"]) == 18
    assert all(x["split"] != "test" for x in full["outliers"] + full["label_issues"])
    assert set(full["outliers"][0]) == {"path", "split", "class", "suggested", "score"}
    top = json.loads(runner.invoke(main, ["audit", cache, "--top", "3", "--include-test", "--json"]).stdout)
    assert top["splits"] == ["train", "val", "test"] and len(top["outliers"]) == 3 and len(top["label_issues"]) <= 3
    none = json.loads(runner.invoke(main, ["audit", cache, "--min-score", "50", "--json"]).stdout)
    assert none["outliers"] == [] and none["label_issues"] == []
    text = runner.invoke(main, ["audit", cache, "--top", "2", "--fix-list", str(tmp_path / "f.csv")])
    assert text.exit_code == 0 and "outliers in train+val: 2" in text.stdout and "transfer relabel" in text.stdout
    listed = json.loads(runner.invoke(main, ["audit", cache, "--top", "2", "--json"]).stdout)
    rows = (tmp_path / "f.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [x["path"] for x in listed["label_issues"] + listed["outliers"]]

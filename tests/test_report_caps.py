"""The report's galleries are capped and say so; the audit's fix list stays complete."""

import csv
from pathlib import Path

import numpy as np

import pipeline
from pipeline.config import FeatureConfig
from pipeline.store import FeatureCache, Row

GROUP_KINDS = ("exact_duplicates", "label_conflicts", "cross_split", "near_duplicates")


def synthetic_cache(path: Path, n: int = 40, copies: int = 6) -> str:
    """A feature file of ``n`` images in two classes (train, then val every fourth), whose first ``copies`` images
    each have a near copy in the same split and class; no photos behind it (the page draws placeholders)."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    X = (rng.gamma(1.0, 1.0, (2, 32))[y] + rng.normal(0, 0.8, (n, 32))).astype(np.float32)
    X[n - copies:] = X[:copies] + 0.001
    y[n - copies:] = y[:copies]
    split = np.where(np.arange(n) % 4 == 3, "val", "train")
    split[n - copies:] = split[:copies]
    paths = [f"{split[i]}/c{y[i]}/img{i:03d}.png" for i in range(n)]
    config = FeatureConfig(backbone="mobilenet_v2", weights="imagenet", weights_sha256="0" * 64, input_size=96,
                           dataset_root=str(path.parent / "photos"))
    with FeatureCache(path, config) as cache:
        cache.parts.write([(f"{i:064x}", 0) for i in range(n)], X)
        cache.commit(["c0", "c1"], {s: [Row(paths[i], int(y[i]), f"{i:064x}") for i in np.flatnonzero(split == s)]
                                    for s in ("train", "val")}, [])
    return str(path)


def test_a_capped_gallery_says_how_many_it_shows_while_the_fix_list_holds_all(tmp_path):
    cache = synthetic_cache(tmp_path / "features.h5")
    run = pipeline.train(cache, "logreg", runs_root=tmp_path / "runs")["run_dir"]
    page = Path(pipeline.write_report([run], tmp_path / "report.html", shown=3)["report"]).read_text()
    found = pipeline.audit_cache(cache, fix_list=tmp_path / "fixes.csv")
    total = len(found["outliers"])
    assert total == 20 and len(found["near_duplicates"]) == 6
    gallery = page.split("<h3>outliers: ")[1].split("<h3>")[0]
    assert gallery.startswith(f"{total}</h3>") and f"Showing 3 of {total} images" in gallery
    assert gallery.count("<img") == 3
    copies = page.split("<h3>near duplicates: 6</h3>")[1].split("<h3>")[0]
    assert copies.count('class="group"') == 3 and "Showing 3 of 6 groups" in copies
    with open(tmp_path / "fixes.csv", newline="") as fh:
        assert sum(row["finding"] == "outlier" for row in csv.DictReader(fh)) == total
    uncapped = Path(pipeline.write_report([run], tmp_path / "all.html")["report"]).read_text()
    assert "Showing" not in uncapped and uncapped.split("<h3>outliers: ")[1].split("<h3>")[0].count("<img") == total


def test_the_map_sample_keeps_every_finding_and_each_class_share():
    from pipeline.report.map import sample

    labels = np.repeat([0, 1, 2], [9000, 900, 100])
    marked = {"outliers": np.isin(np.arange(10_000), [3, 9950])}
    chosen = sample(10_000, marked, size=1000, labels=labels)
    assert len(chosen) == len(set(chosen)) == 1000 and {3, 9950} <= set(chosen.tolist())
    assert np.bincount(labels[chosen]).tolist() == [899, 90, 11]  # 898 + 90 + 10 drawn, plus the two findings


def test_audit_rows_are_one_array_a_split_is_a_view_and_a_sample_reads_only_its_rows(tmp_path):
    from pipeline.audit.vectors import read_index, read_rows
    from pipeline.store import FeatureFile

    with FeatureFile(synthetic_cache(tmp_path / "features.h5")) as f:
        every = read_rows(f)
        train = every.in_splits(("train",))
        picked = np.array([1, 7, 30, 33])
        sample = read_rows(f, only=picked)
        bare = read_index(f)
    assert np.shares_memory(train.vectors, every.vectors)  # the train rows come first: a view, not a copy
    assert [e.split for e in train.images] == ["train"] * len(train.vectors)
    assert np.array_equal(sample.vectors, every.vectors[picked]) and np.array_equal(sample.labels, every.labels[picked])
    assert [e.path for e in sample.images] == [every.images[i].path for i in picked]
    assert bare.vectors.shape == (len(every.images), 0) and np.array_equal(bare.labels, every.labels)

"""The audit at scale, on small synthetic arrays: approximate neighbours, capped sheets, a sampled map."""

import csv

import numpy as np
import pytest
from PIL import Image

from pipeline.audit import neighbours
from pipeline.audit.duplicates import near_pairs
from pipeline.audit.fixes import write_fix_list
from pipeline.audit.kinds import FINDINGS
from pipeline.audit.outliers import outlier_scores
from pipeline.audit.sheets import SHEET_GROUPS, SHEET_IMAGES, sheets, write_sheets
from pipeline.datasets import Entry
from pipeline.report.map import MAP_POINTS, feature_map_png, sample


def clustered(n: int, dim: int = 64, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    X = rng.gamma(1.0, 1.0, (classes, dim))[y] + rng.normal(0, 0.5, (n, dim))
    return np.maximum(X, 0).astype(np.float32), y


@pytest.mark.parametrize("exact", [True, False])
def test_nearest_matches_brute_force(exact, monkeypatch):
    monkeypatch.setattr(neighbours, "INDEX_DIMS", 32)  # the index projects the 64 dimensions
    X, _ = clustered(600)
    distance, index = neighbours.nearest(X, 8, exact=exact)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    truth = np.argsort(-(unit @ unit.T), axis=1)[:, :8]
    recall = np.mean([len(set(a) & set(b)) / 8 for a, b in zip(index, truth)])
    assert recall > (0.999 if exact else 0.9)  # isotropic noise: the projection's worst case
    assert (index[:, 0] == np.arange(len(X))).mean() > 0.99  # each row finds itself first
    assert np.all(np.diff(distance, axis=1) >= -1e-6)  # nearest first


def test_approximate_neighbours_find_planted_near_copies(monkeypatch):
    X, _ = clustered(3000, seed=1)
    rng = np.random.default_rng(2)
    copies = rng.choice(3000, 20, replace=False)
    sources = rng.choice(np.setdiff1d(np.arange(3000), copies), 20, replace=False)
    X[copies] = X[sources] + rng.normal(0, 0.01, (20, X.shape[1])).astype(np.float32)
    images = [Entry("train", "a", f"train/a/{i}.png", f"{i:064x}") for i in range(3000)]
    monkeypatch.setattr(neighbours, "EXACT_ROWS", 100)  # the index, not the exact search
    monkeypatch.setattr(neighbours, "INDEX_DIMS", 32)
    pairs = {(i, j) for i, j, _ in near_pairs(images, X, 0.99)}
    assert {tuple(sorted(p)) for p in zip(copies.tolist(), sources.tolist())} <= pairs
    assert len(pairs) == 20


def test_outlier_scores_agree_between_exact_and_approximate(monkeypatch):
    X, y = clustered(1500, seed=3)
    X[0] = np.random.default_rng(4).gamma(1.0, 1.0, X.shape[1])  # a foreign vector
    exact = outlier_scores(X, y)
    monkeypatch.setattr(neighbours, "EXACT_ROWS", 100)
    monkeypatch.setattr(neighbours, "INDEX_DIMS", 32)
    approximate = outlier_scores(X, y)
    assert exact.argmax() == approximate.argmax() == 0
    assert np.corrcoef(exact, approximate)[0, 1] > 0.95


def many_findings(n: int) -> dict:
    issue = {"split": "train", "class": "a", "suggested": "b"}
    return {"label_issues": [{**issue, "path": f"train/a/{i}.png", "score": 0.9} for i in range(n)],
            "outliers": [{**issue, "path": f"train/a/o{i}.png", "suggested": None, "score": 3.0} for i in range(n)],
            "exact_duplicates": [[{"path": f"train/a/d{i}.png", "split": "train", "class": "a"}] * 2 for i in range(n)]}


def test_sheets_are_capped_and_the_fix_list_is_complete(tmp_path):
    import pipeline.audit.sheets as sheets_module

    n = max(SHEET_GROUPS, SHEET_IMAGES) + 7
    found = many_findings(n)
    written = write_sheets(found, tmp_path / "photos", tmp_path / "sheets")
    assert len([w for w in written if "exact_duplicates-" in w]) == SHEET_GROUPS
    grid = [name for name, _ in sheets(FINDINGS["label_issues"], found["label_issues"], tmp_path)]
    assert grid == ["label_issues.png"]
    with Image.open(tmp_path / "sheets" / "label_issues.png") as im:
        rows = -(-SHEET_IMAGES // sheets_module.GRID)
        assert im.height < (rows + 1) * (sheets_module.THUMB + 4 * sheets_module.LINE + 2 * sheets_module.PAD)
    with open(write_fix_list(found, tmp_path / "fixes.csv"), newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 2 * n


def test_map_samples_large_sets_and_keeps_the_marked_rows():
    marked = {"outliers": np.zeros(MAP_POINTS * 3, bool)}
    marked["outliers"][[5, 999, MAP_POINTS * 3 - 1]] = True
    chosen = sample(MAP_POINTS * 3, marked)
    assert len(chosen) == MAP_POINTS and len(set(chosen)) == MAP_POINTS
    assert {5, 999, MAP_POINTS * 3 - 1} <= set(chosen.tolist())
    assert len(sample(10, marked)) == 10
    many = {"label_issues": np.ones(MAP_POINTS * 3, bool)}
    assert len(sample(MAP_POINTS * 3, many)) == MAP_POINTS  # more marked than fit: a sample of them


def test_map_of_more_rows_than_drawn(monkeypatch):
    import pipeline.report.map as map_module

    monkeypatch.setattr(map_module, "MAP_POINTS", 60)
    drawn = []
    monkeypatch.setattr(map_module, "embed", lambda v: drawn.append(len(v)) or np.zeros((len(v), 2)))
    X, y = clustered(500)
    png = feature_map_png(X, ["a", "b", "c", "d"], y, {"outliers": np.arange(500) < 3})
    assert png.startswith(b"\x89PNG") and drawn == [60]


def test_label_issues_on_principal_components_above_the_large_size(monkeypatch):
    from pipeline.audit import labels
    from pipeline.audit.vectors import Rows

    X, y = clustered(1200, seed=5)
    flipped = np.arange(0, 1200, 40)
    given = y.copy()
    given[flipped] = (y[flipped] + 1) % 4
    images = [Entry("train", "abcd"[c], f"train/{'abcd'[c]}/{i}.png", f"{i:064x}") for i, c in enumerate(given)]
    monkeypatch.setattr(labels, "LARGE", 1000)
    monkeypatch.setattr(labels, "LARGE_DIMS", 16)
    used, original = [], labels.out_of_fold
    monkeypatch.setattr(labels, "out_of_fold", lambda X, *a: used.append(X.shape) or original(X, *a))
    found = labels.find_label_issues(Rows(images, np.zeros(1200, int), given, X), list("abcd"))
    assert used and all(shape == (1200, 16) for shape in used)
    hits = {int(x["path"].rsplit("/", 1)[1][:-4]) for x in found} & set(flipped.tolist())
    assert len(hits) >= 0.8 * len(flipped) and len(hits) >= 0.8 * len(found)


def test_a_large_group_of_copies_draws_a_capped_sheet(tmp_path):
    import pipeline.audit.sheets as sheets_module

    group = [{"path": f"train/a/{i}.png", "split": "train", "class": "a"} for i in range(500)]
    [(name, sheet)] = sheets(FINDINGS["exact_duplicates"], [group], tmp_path)
    cell = sheets_module.THUMB + 2 * sheets_module.PAD
    assert name == "exact_duplicates-001.png"
    assert sheet.width == 2 * sheets_module.GRID * cell
    assert sheet.height < (sheets_module.GROUP_IMAGES // (2 * sheets_module.GRID) + 1) * 2 * cell


def test_group_folds_keep_each_group_in_one_fold_and_cover_every_row():
    from pipeline.audit.labels import group_folds

    groups = np.arange(900) // 3  # an image and two augmented views
    y = np.random.default_rng(6).integers(0, 3, 300)[groups]
    folds = group_folds(y, groups, 5)
    held = np.concatenate([h for _, h in folds])
    assert sorted(held.tolist()) == list(range(900))
    for fit_rows, held_out in folds:
        assert not set(groups[fit_rows]) & set(groups[held_out])
        assert abs(np.bincount(y[held_out], minlength=3) / len(held_out) - np.bincount(y) / 900).max() < 0.05

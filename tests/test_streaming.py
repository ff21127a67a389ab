"""Stage two on rows read in chunks: every row read once, the same accuracy as in memory, refusals named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import refused
from pipeline import rows as rows_module
from pipeline.cli import main
from pipeline.config import FeatureConfig
from pipeline.rows import Rows
from pipeline.store import FeatureCache, FeatureFile, Row
from pipeline.training import compare, read_features, train

CLASSES, DIM = 3, 16


def feature_file(path: Path, n: int = 300, views: int = 0, seed: int = 0) -> Path:
    """``n`` images of 3 classes (a centre each plus noise), 70/30 train/val, each with ``views`` augmented rows
    in train, written by the store's own writer."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.5, (CLASSES, DIM)).astype(np.float32)
    y = np.arange(n) % CLASSES
    X = centres[y] + rng.normal(0, 1, (n, DIM)).astype(np.float32)
    split = np.where(np.arange(n) % 10 < 7, "train", "val")
    sha = [f"{i:064x}" for i in range(n)]
    config = FeatureConfig(backbone="mobilenet_v2", weights="imagenet", weights_sha256="0" * 64, input_size=96,
                           dataset_root=str(path.parent / "photos"))
    with FeatureCache(path, config) as cache:
        cache.parts.write([(s, 0) for s in sha], X)
        augmented = [i for i in range(n) if split[i] == "train"]
        for v in range(1, views + 1):
            cache.parts.write([(sha[i], v) for i in augmented], X[augmented] + 0.1 * v)
        rows = {name: [Row(f"{name}/c{y[i]}/{i:05d}.png", int(y[i]), sha[i], view)
                       for i in np.flatnonzero(split == name) for view in range(views + 1 if name == "train" else 1)]
                for name in ("train", "val")}
        cache.commit([f"c{c}" for c in range(CLASSES)], rows, [])
    return path


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 40 rows, read in blocks of 16, so a few hundred rows take many chunks."""
    monkeypatch.setattr(rows_module, "CHUNK_BYTES", 40 * DIM * 4)
    monkeypatch.setattr(rows_module, "BLOCK_ROWS", 16)


@pytest.mark.parametrize("shuffled", [False, True])
def test_chunks_cover_every_row_once(tmp_path, small_chunks, shuffled):
    path = feature_file(tmp_path / "f.h5", views=1)
    with FeatureFile(path) as f:
        everything = f.features("train")[()]
        originals = Rows.originals(f, "train")
        assert originals.index is not None and len(originals) < len(everything)
        seen = [(X, y) for X, y in originals.chunks(np.random.default_rng(0) if shuffled else None)]
        assert len(seen) > 3 and max(len(X) for X, _ in seen) <= 40
        X = np.concatenate([X for X, _ in seen])
        y = np.concatenate([y for _, y in seen])
        wanted = everything[f.column("train", "view") == 0]
        order = np.lexsort(X.T[::-1]) if shuffled else np.arange(len(X))
        expected = np.lexsort(wanted.T[::-1]) if shuffled else np.arange(len(wanted))
        np.testing.assert_array_equal(X[order], wanted[expected])
        labels = f.column("train", "labels")[f.column("train", "view") == 0]
        np.testing.assert_array_equal(y[order], labels[expected])
        if shuffled:  # the rows really are mixed, not in file order
            assert not np.array_equal(X, wanted)


def test_held_rows_are_read_once_and_shared_by_train_without_views(tmp_path):
    with read_features(feature_file(tmp_path / "f.h5")) as features:
        assert features.splits["train"] is features.train
        assert features.train.held() is features.train.held()


@pytest.mark.parametrize("head", ["logreg", "svm", "dense"])
def test_streamed_heads_match_in_memory(tmp_path, small_chunks, head):
    path = feature_file(tmp_path / "f.h5", views=1)
    options = {"epochs": 10, "patience": 3} if head == "dense" else {}
    held = train(path, head, options, runs_root=tmp_path / "runs", stream=False)
    streamed = train(path, head, options, runs_root=tmp_path / "runs", stream=True)
    assert (held["streamed"], streamed["streamed"]) == (False, True)
    for split in ("train", "val"):
        assert streamed["metrics"][split]["images"] == held["metrics"][split]["images"]
        assert streamed["metrics"][split]["accuracy"] >= held["metrics"][split]["accuracy"] - 0.02, split
    assert streamed["metrics"]["val"]["accuracy"] > 0.9


def test_auto_streams_above_the_in_memory_limit(tmp_path, monkeypatch):
    import pipeline.training

    path = feature_file(tmp_path / "f.h5")
    monkeypatch.setattr(pipeline.training, "IN_MEMORY_BYTES", 1000)
    assert train(path, "logreg", runs_root=tmp_path / "runs")["streamed"] is True
    monkeypatch.setattr(pipeline.training, "IN_MEMORY_BYTES", 10 ** 9)
    assert train(path, "logreg", runs_root=tmp_path / "runs")["streamed"] is False


def test_knn_refuses_to_stream_and_compare_skips_it(tmp_path):
    path = feature_file(tmp_path / "f.h5")
    result = CliRunner().invoke(main, ["train", str(path), "--head", "knn", "--stream",
                                       "--runs-root", str(tmp_path / "runs")])
    refused(result, "--no-stream", "logreg")
    rows = compare(path, ["logreg", "knn"], runs_root=tmp_path / "runs", stream=True)
    assert rows[0]["run_dir"] and rows[0]["val_accuracy"] > 0.9
    assert rows[1]["run_dir"] is None and "cannot train streaming" in rows[1]["skipped"]
    assert [p.name.split("-")[-3] for p in (tmp_path / "runs").iterdir()] == ["logreg"]


@pytest.mark.parametrize("classes", [2, 3])
def test_chunked_lbfgs_reaches_scikit_learns_logistic_regression(tmp_path, small_chunks, classes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from pipeline.heads import _streaming

    with FeatureFile(feature_file(tmp_path / "f.h5")) as f:
        rows = Rows(f, "train")
        keep = np.flatnonzero(rows.y < classes)
        rows = rows.subset(keep)
        X, y = rows.held(), rows.y
        scaler = StandardScaler().fit(X)
        reference = LogisticRegression(C=0.05, tol=1e-8, max_iter=5000).fit(scaler.transform(X), y)
        labels = np.unique(y)
        loss = _streaming.logistic_loss if classes == 2 else _streaming.softmax_loss
        columns = 1 if classes == 2 else classes
        coef, intercept, _ = _streaming.fit_full(Rows(f, "train").subset(keep), scaler, loss,
                                                 np.zeros((columns, DIM)), np.zeros(columns), labels, 0.05, None, 500)
    np.testing.assert_allclose(coef, reference.coef_, atol=2e-3)
    np.testing.assert_allclose(intercept, reference.intercept_, atol=2e-3)

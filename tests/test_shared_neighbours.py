"""One neighbour index for the whole audit: near copies among all images and outliers among the audited ones."""

import numpy as np

from pipeline.audit import neighbours
from pipeline.audit.directions import top_directions
from pipeline.audit.neighbours import Neighbourhood
from pipeline.audit.vectors import Rows
from pipeline.datasets import Entry


def clustered_rows(n: int, dim: int = 64, seed: int = 0) -> Rows:
    """``n`` images in 4 classes, every fifth in test."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    X = np.maximum(rng.gamma(1.0, 1.0, (4, dim))[y] + rng.normal(0, 0.5, (n, dim)), 0).astype(np.float32)
    images = [Entry("test" if i % 5 == 0 else "train", f"c{y[i]}", f"c{y[i]}/{i}.png", f"{i:064x}") for i in range(n)]
    return Rows(images, np.zeros(n, int), y, X)


def test_one_index_serves_every_image_and_the_audited_ones(monkeypatch):
    monkeypatch.setattr(neighbours, "EXACT_ROWS", 100)  # the index, not the exact search
    monkeypatch.setattr(neighbours, "INDEX_DIMS", 32)
    built = []
    candidates = neighbours._candidates
    monkeypatch.setattr(neighbours, "_candidates", lambda *a, **k: built.append(1) or candidates(*a, **k))
    images = clustered_rows(1500)
    shared = Neighbourhood(images)
    audited = images.in_splits(("train",))
    _, near = shared.nearest(images, 11)
    distance, index = shared.nearest(audited, 21)
    assert len(built) == 1  # one index, one search, for both requests
    assert near.shape == (1500, 11) and index.shape == (len(audited.images), 21)
    assert index.min() >= 0 and index.max() < len(audited.images)  # indices into the audited rows
    assert np.all(np.diff(distance, axis=1) >= -1e-6)
    unit = audited.vectors / np.linalg.norm(audited.vectors, axis=1, keepdims=True)
    truth = np.argsort(-(unit @ unit.T), axis=1)[:, :21]
    assert np.mean([len(set(a) & set(b)) / 21 for a, b in zip(index, truth)]) > 0.9
    assert np.allclose(1 - distance[:, 1], np.sum(unit * unit[index[:, 1]], axis=1), atol=1e-5)


def test_rows_it_does_not_hold_get_their_own_search():
    images = clustered_rows(50)
    stranger = clustered_rows(30, seed=1)
    stranger.images = [Entry("val", e.label, e.path, e.sha256) for e in stranger.images]
    distance, index = Neighbourhood(images).nearest(stranger, 5)
    assert index.shape == (30, 5) and (index[:, 0] == np.arange(30)).all() and np.allclose(distance[:, 0], 0, atol=1e-5)


def test_top_directions_span_what_the_svd_finds():
    sample = np.random.default_rng(2).normal(0, 1, (300, 20)) * np.linspace(3, 0.1, 20)
    basis = top_directions(sample, 5)
    svd = np.linalg.svd(sample, full_matrices=False)[2][:5].T
    assert basis.shape == (20, 5) and np.allclose(np.abs(basis.T @ svd), np.eye(5), atol=1e-4)

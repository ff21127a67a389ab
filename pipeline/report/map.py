"""A 2-D map of the cached features: one dot per image, coloured by class, the audit's findings marked.

t-SNE (scikit-learn) of the L2-normalized vectors after PCA to 50 dimensions. Measured against UMAP on
hymenoptera + hotdog_nothotdog (648 images, MobileNetV2 224 px): t-SNE kept neighbourhoods a little
better (trustworthiness 0.966 vs 0.957; 5-NN class accuracy in 2-D 0.90 vs 0.89, 0.91 in 50-D) in 2.3 s
on one thread (1,000 iterations; now :data:`ITERATIONS`), against 0.8 s for UMAP plus 13 s of JIT compilation on its first call in a process, and
UMAP would add numba and llvmlite to the dependencies.

t-SNE grows faster than linearly, so a set of more than :data:`MAP_POINTS` images is drawn from a sample:
the marked images first (up to half the sample), then a draw of the rest, each class in proportion to its size.
"""

from __future__ import annotations

import io

import numpy as np

PCA_DIMS = 50
MAP_POINTS = 3000  # dots on the map at most
ITERATIONS = 500  # t-SNE's, 250 of them early exaggeration: on 3,000 of 100k synthetic rows, 7.3 s of CPU (1,000:
# 14.7 s), trustworthiness 0.977 (0.979), 5-NN class accuracy in 2-D 0.973 (the same)


def sample(count: int, marked: dict[str, np.ndarray], size: int | None = None, seed: int = 0,
           labels: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of at most ``size`` (:data:`MAP_POINTS`) of ``count`` rows: every marked row when they fill
    at most half of them, else a random draw of them that fills half, then a random draw of the other rows
    (with ``labels``, stratified: each class in proportion to its share of them).

    Examples
    --------
    >>> sample(10, {"outliers": np.arange(10) == 7}, size=4)
    array([4, 5, 7, 8])
    """
    size = size or MAP_POINTS
    if count <= size:
        return np.arange(count)
    rng = np.random.default_rng(seed)
    flagged = np.flatnonzero(np.any(list(marked.values()), axis=0)) if marked else np.zeros(0, int)
    if len(flagged) > size // 2:
        flagged = rng.choice(flagged, size // 2, replace=False)
    rest = np.setdiff1d(np.arange(count), flagged)
    if labels is None:
        return np.sort(np.concatenate([flagged, rng.choice(rest, size - len(flagged), replace=False)]))
    return np.sort(np.concatenate([flagged, _stratified(rest, labels[rest], size - len(flagged), rng)]))


def _stratified(rows: np.ndarray, labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` (fewer than ``len(rows)``) of ``rows``, each label's share by largest remainders, at random within."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    share = size * counts / counts.sum()
    quota = np.floor(share).astype(int)
    quota[np.argsort(quota - share, kind="stable")[:size - quota.sum()]] += 1
    return np.concatenate([rng.choice(rows[inverse == c], q, replace=False) for c, q in enumerate(quota)])


def embed(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """``(N, 2)`` t-SNE coordinates of ``vectors`` (one thread: on a busy machine OpenMP threads made it 8x slower).

    Examples
    --------
    >>> embed(np.random.rand(40, 16)).shape
    (40, 2)
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    if len(vectors) < 4:
        return np.zeros((len(vectors), 2))
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    with threadpool_limits(1):
        reduced = PCA(min(PCA_DIMS, *unit.shape), random_state=seed).fit_transform(unit)
        return TSNE(2, init="pca", perplexity=min(30.0, (len(vectors) - 1) / 3), max_iter=ITERATIONS,
                    random_state=seed).fit_transform(reduced)


def feature_map_png(vectors: np.ndarray, classes: list[str], labels: np.ndarray, marked: dict[str, np.ndarray],
                    title: str = "", counts: dict[str, int] | None = None) -> bytes:
    """The map as PNG bytes: dots coloured by ``classes[labels]``, rows where ``marked[name]`` is True drawn
    with the marker of that image kind (:data:`pipeline.audit.kinds.FINDINGS`: rings for ``label_issues``,
    crosses for ``outliers``); at most :data:`MAP_POINTS` rows (:func:`sample`), the legend counting all (or
    ``counts``, when the rows are a sample already).

    Examples
    --------
    >>> png = feature_map_png(np.random.rand(40, 16), ["a", "b"], np.arange(40) % 2, {"outliers": np.arange(40) < 2})
    >>> png[:4]
    b'\\x89PNG'
    """
    from ..audit.kinds import FINDINGS
    from ..plots import _pyplot

    plt = _pyplot()
    shown = sample(len(vectors), marked, labels=labels)
    counts = counts or {name: int(rows.sum()) for name, rows in marked.items()}
    vectors, labels, marked = vectors[shown], labels[shown], {name: rows[shown] for name, rows in marked.items()}
    xy = embed(vectors)
    fig, ax = plt.subplots(figsize=(7, 6))
    colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    size = float(np.clip(4000 / max(len(xy), 1), 8, 40))  # dots visible on small sets, apart on large ones
    for k, name in enumerate(classes):
        at = labels == k
        if at.any():
            ax.scatter(xy[at, 0], xy[at, 1], s=size, color=colours(k % colours.N), alpha=0.7, label=name)
    for name, rows in marked.items():
        kind = FINDINGS[name]
        if rows.any():  # rings hollow, so the class colour shows through
            ax.scatter(xy[rows, 0], xy[rows, 1], s=3 * size, marker=kind.marker,
                       facecolors="none" if kind.marker == "o" else "black", edgecolors="black", linewidths=1.2,
                       label=f"{kind.one} ({counts[name]})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or "t-SNE of the cached features")
    ax.legend(loc="best", fontsize=8, markerscale=1.0)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def cache_map_png(cache_file, found: dict) -> bytes:
    """The map of every image in a feature file, with the suspicious images of ``found`` (an
    :func:`pipeline.audit.audit_cache` result: its label issues, outliers, each image kind) marked.

    Examples
    --------
    >>> png = cache_map_png("cache/pets/mobilenet_v2-224-avg.h5", audit_cache("cache/pets/mobilenet_v2-224-avg.h5"))  # doctest: +SKIP
    """
    from ..audit.kinds import image_kinds
    from ..audit.vectors import read_index, read_rows
    from ..store import FeatureFile

    with FeatureFile(cache_file) as f:
        every, classes = read_index(f), f.classes  # images and labels: what to sample
        paths = np.array([e.path for e in every.images])
        marked = {k.name: np.isin(paths, [x["path"] for x in found.get(k.name, [])]) for k in image_kinds()}
        shown = sample(len(paths), marked, labels=every.labels)
        rows = read_rows(f, only=shown)  # the vectors of the sample alone
    of = f"a sample of {len(shown)} of {len(paths)}" if len(shown) < len(paths) else str(len(paths))
    title = f"t-SNE of {of} images"
    counts = {name: int(m.sum()) for name, m in marked.items()}
    return feature_map_png(rows.vectors, classes, rows.labels, {name: m[shown] for name, m in marked.items()},
                           title, counts)

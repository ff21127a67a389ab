"""The nearest rows of every row by cosine, without an N x N pass: exact in blocks for small sets, from an
approximate index (FAISS HNSW) for large ones. The index holds the rows projected to :data:`INDEX_DIMS`
dimensions (10x less work per comparison than 1,280) and proposes candidates; their exact cosines rank them.

Measured on 20,000 synthetic 1,280-d rows with class structure (one thread, on a busy 2-core machine, so the
seconds are only comparable with each other), 21 neighbours of every row, recall against the exact ones:
exact search (scikit-learn brute force) 104 s (1.00), FAISS HNSW (M=32) 156 s (0.997), hnswlib HNSW 118 s
(0.989), FAISS IVF (nprobe 16) 54 s (0.74), pynndescent 264 s (0.95, JIT compilation included); FAISS HNSW on
128 directions with 4 x 21 candidates 124 s (0.996), of which adding the rows took 2.8 s of CPU and searching
4.0 s. Exact search grows with N x N, HNSW with about N log N, so above :data:`EXACT_ROWS` the index wins.
FAISS rather than hnswlib: it ships wheels (hnswlib builds from source with a C++ compiler); pynndescent would
add numba and llvmlite and compile on first use.

The audit finds neighbours once (:class:`Neighbourhood`): one index of every image, one search, and each finding
kind takes its neighbours among the images it looks at (near copies: all of them; outliers: the audited splits).

Examples
--------
>>> shared = Neighbourhood(images)                                   # doctest: +SKIP
>>> distances, indices = shared.nearest(images.in_splits(("train",)), 21)   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._blas import one_blas_thread
from .directions import top_directions

if TYPE_CHECKING:
    from .vectors import Rows

EXACT_ROWS = 10_000  # up to this many rows the exact search is about as fast, and exact
BLOCK = 512  # rows compared against all others at a time: BLOCK x N similarities in memory
HNSW_LINKS = 32  # M; at 40k rows M=16 saved 27% of the search's time but recall@21 fell from 0.992 to 0.958
HNSW_BUILD = 80  # efConstruction (adding rows is 41% of a 100k-image audit; efConstruction 40: recall 0.92)
HNSW_SEARCH = 64  # efSearch (raised to the candidates wanted when more)
CLOSE_LINKS, CLOSE_BUILD = 16, 40  # for near copies alone: 2.3x less time adding rows; they stand far from the rest
INDEX_DIMS = 128  # the index holds the rows projected on this many directions (see _project)...
CANDIDATES = 4  # ...and finds this many times k candidates, ranked again by their exact cosine
PCA_SAMPLE = 5_000  # rows the directions are computed from
SHARED_K = 21  # neighbours a shared search finds candidates for (outliers: the image and its 20 nearest)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """The rows scaled to length 1 (float32; a zero row stays zero)."""
    vectors = np.asarray(vectors, np.float32)
    return vectors / lengths(vectors)[:, None]


def lengths(vectors: np.ndarray) -> np.ndarray:
    """Each row's length (float32, at least 1e-12): the searches divide by it rather than hold unit copies of
    the rows (5 GB at a million 1,280-d rows)."""
    return np.maximum(np.linalg.norm(np.asarray(vectors, np.float32), axis=1), 1e-12)


def nearest(vectors: np.ndarray, k: int, exact: bool | None = None, close_only: bool = False
            ) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, indices)``, each ``(N, k)``: the ``k`` rows nearest each row by cosine distance
    (``1 - cosine``), nearest first, the row itself usually among them (a byte-identical twin may tie with it).

    ``exact`` chooses the blocked exact search or the approximate index; None: exact up to
    :data:`EXACT_ROWS` rows. ``close_only``: only neighbours far closer than typical ones matter (near copies),
    so a lighter index does (:data:`CLOSE_LINKS`, :data:`CLOSE_BUILD`).

    Examples
    --------
    >>> d, i = nearest(np.eye(4) + 0.1, 2)
    >>> i[:, 0].tolist()
    [0, 1, 2, 3]
    """
    vectors = np.asarray(vectors, np.float32)
    k = min(k, len(vectors))
    if k < 1:
        return np.zeros((len(vectors), 0)), np.zeros((len(vectors), 0), int)
    if exact if exact is not None else len(vectors) <= EXACT_ROWS:
        similarity, index = _exact(vectors, k)
    else:
        links, build = (CLOSE_LINKS, CLOSE_BUILD) if close_only else (HNSW_LINKS, HNSW_BUILD)
        similarity, index = (a[:, :k] for a in _candidates(vectors, k, links, build))
    return np.clip(1.0 - similarity, 0.0, 2.0).astype(np.float64), index.astype(np.int64)


def _exact(vectors: np.ndarray, k: int, queries: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Similarities and indices of the ``k`` rows of ``vectors`` most similar (by cosine) to each of ``queries``
    (indices into ``vectors``; all rows by default), BLOCK queries at a time."""
    queries = np.arange(len(vectors)) if queries is None else queries
    norms = lengths(vectors)
    similarity = np.empty((len(queries), k), np.float32)
    index = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), BLOCK):
        asked = queries[start:start + BLOCK]
        sims = (vectors[asked] / norms[asked, None]) @ vectors.T
        sims /= norms
        if k < len(vectors):
            top = np.argpartition(sims, -k, axis=1)[:, -k:]
        else:
            top = np.tile(np.arange(len(vectors)), (len(sims), 1))
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        similarity[start:start + BLOCK] = np.take_along_axis(top_sims, order, axis=1)
        index[start:start + BLOCK] = np.take_along_axis(top, order, axis=1)
    return similarity, index


@one_blas_thread
def _candidates(vectors: np.ndarray, k: int, links: int = HNSW_LINKS, build: int = HNSW_BUILD
                ) -> tuple[np.ndarray, np.ndarray]:
    """Similarities and indices of :data:`CANDIDATES` x ``k`` candidates of each row, most similar first: from a
    FAISS HNSW index of the rows projected on :data:`INDEX_DIMS` directions (one thread), ranked by their exact
    cosine; a candidate the index could not reach is the row itself, at similarity -1. One BLAS thread, as the
    rest of the audit (the first request may come from a kind that does not limit them)."""
    import faiss

    faiss.omp_set_num_threads(1)  # as the rest of the audit: OpenMP threads on a busy machine slow it down
    norms = lengths(vectors)
    reduced = unit_rows(_project(vectors, norms, INDEX_DIMS))
    wanted = min(CANDIDATES * k, len(vectors))
    index = faiss.IndexHNSWFlat(reduced.shape[1], links, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = build
    index.add(reduced)
    index.hnsw.efSearch = max(HNSW_SEARCH, wanted)
    _, found = index.search(reduced, wanted)
    del reduced, index
    rows = np.arange(len(vectors))[:, None]
    missing = found < 0  # fewer reachable than wanted: the row itself fills in, ranked last
    found = np.where(missing, rows, found)
    similarity = np.empty(found.shape, np.float32)
    step = BLOCK // 4  # step x wanted x D candidate rows in memory at a time
    for start in range(0, len(vectors), step):
        near = found[start:start + step]
        dots = np.matmul(vectors[near], vectors[start:start + step, :, None])[..., 0]
        similarity[start:start + step] = dots / norms[near] / norms[start:start + step, None]
    similarity[missing] = -1.0
    order = np.argsort(-similarity, axis=1, kind="stable")
    return np.take_along_axis(similarity, order, axis=1), np.take_along_axis(found, order, axis=1)


def _project(vectors: np.ndarray, norms: np.ndarray, dims: int) -> np.ndarray:
    """The unit rows (``vectors`` over their ``norms``) on the ``dims`` directions that keep their dot products
    best (:func:`top_directions` of a sample of :data:`PCA_SAMPLE` rows, not centred), float32, in blocks."""
    if vectors.shape[1] <= dims:
        return vectors / norms[:, None]
    rng = np.random.default_rng(0)
    picked = np.sort(rng.choice(len(vectors), min(PCA_SAMPLE, len(vectors)), replace=False))
    basis = top_directions(vectors[picked] / norms[picked, None], dims)
    step = 8 * BLOCK
    return np.concatenate([(vectors[s:s + step] / norms[s:s + step, None]) @ basis
                           for s in range(0, len(vectors), step)])


class Neighbourhood:
    """The nearest images of every image of ``images`` (view 0 rows), found once for every finding kind.

    Up to :data:`EXACT_ROWS` images each request is an exact search among the requested rows. Above, the first
    request builds one index of all the images and keeps :data:`CANDIDATES` x :data:`SHARED_K` candidates of each,
    ranked by exact cosine; a request for some of the images takes each one's nearest among them from its
    candidates (an exact search for the few with too few of them among the candidates).
    """

    def __init__(self, images: Rows):
        self.images = images
        self.position = {(e.split, e.path): i for i, e in enumerate(images.images)}
        self.found: tuple[np.ndarray, np.ndarray] | None = None  # (similarities, indices) of the candidates

    def nearest(self, rows: Rows, k: int) -> tuple[np.ndarray, np.ndarray]:
        """:func:`nearest` of ``rows.vectors`` (images of this neighbourhood) among themselves: ``(distances,
        indices into rows)``, each ``(len(rows), k)``."""
        at = np.array([self.position.get((e.split, e.path), -1) for e in rows.images], np.int64)
        total = len(self.images.vectors)
        if total <= EXACT_ROWS or min(k, len(at)) < 1 or (at < 0).any() or len(np.unique(at)) < len(at):
            return nearest(rows.vectors, k)
        k = min(k, len(at))
        if self.found is None or self.found[1].shape[1] < min(CANDIDATES * k, total):
            self.found = _candidates(self.images.vectors, max(k, SHARED_K))
        similarity, found = self.found[0][at], self.found[1][at]
        local = np.full(total, -1, np.int64)
        local[at] = np.arange(len(at))
        found = np.where(similarity > -1.0, local[found], -1)  # -1: not among the rows, or not reached
        first = np.argsort(found < 0, axis=1, kind="stable")[:, :k]  # the rows' own first, most similar first
        similarity, found = np.take_along_axis(similarity, first, axis=1), np.take_along_axis(found, first, axis=1)
        short = np.flatnonzero((found < 0).any(axis=1))
        if len(short):
            similarity[short], found[short] = _exact(rows.vectors, k, short)
        return np.clip(1.0 - similarity, 0.0, 2.0).astype(np.float64), found

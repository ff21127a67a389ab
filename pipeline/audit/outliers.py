"""Outliers: images unlike anything in the dataset (a flower among cats and dogs, a screenshot, a blank frame).

The raw score of an image is the mean cosine distance to its 20 nearest images, times one plus the
normalized entropy of the classes of its 10 nearest. Distance alone also ranks the odd members of a class
high (a cat in a cage); their nearest neighbours are still mostly of one class, while a photo that belongs
to no class sits between classes, so its neighbours disagree (a handful of foreign photos of one kind,
filed under random classes, also disagree among themselves). Using the neighbours' classes, never the
image's own, keeps mislabelled images (whose neighbours agree with each other) out of the list. The
reported ``score`` is the raw score over the dataset's median: how many times more isolated than a
typical image. Neighbours come from :func:`pipeline.audit.neighbours.nearest` (an approximate index on large sets).
"""

from __future__ import annotations

import numpy as np

from .._blas import one_blas_thread
from .kinds import Search
from .neighbours import Neighbourhood, nearest
from .vectors import Rows

NEIGHBOURS = 20  # whose mean distance counts
VOTERS = 10  # whose classes count


@one_blas_thread
def outlier_scores(vectors: np.ndarray, labels: np.ndarray, k: int = NEIGHBOURS, voters: int = VOTERS,
                   found: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """One score per row, in units of the median row's (higher: more unlike the rest). ``found``: the
    ``(distances, indices)`` of the ``k + 1`` nearest rows of each (the row itself among them), when already known.

    Examples
    --------
    >>> outlier_scores(np.random.rand(100, 8), np.arange(100) % 2).shape
    (100,)
    """
    k = min(k, len(vectors) - 1)
    if k < 1:
        return np.zeros(len(vectors))
    distance, index = found if found is not None else nearest(vectors, k + 1)
    is_self = index == np.arange(len(vectors))[:, None]  # not always first: a byte-identical twin ties
    others = np.ones_like(is_self)
    others[np.arange(len(vectors)), np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)] = False
    distance, index = distance[others].reshape(-1, k), index[others].reshape(-1, k)
    classes = np.unique(labels)
    share = np.stack([(labels[index[:, :voters]] == c).mean(axis=1) for c in classes], axis=1)
    entropy = -(share * np.log(np.where(share > 0, share, 1))).sum(axis=1) / np.log(max(len(classes), 2))
    raw = distance.mean(axis=1) * (1.0 + entropy)
    typical = np.median(raw)
    return raw / typical if typical > 0 else raw


def find_outliers(rows: Rows, top: int | None = 20, min_score: float = 0.0,
                  neighbours: Neighbourhood | None = None) -> list[dict]:
    """The images (view 0 of ``rows``) with the highest outlier scores, ``{"path", "split", "class",
    "suggested": None, "score"}``, at most ``top`` of them, each at least ``min_score``; their nearest images from
    ``neighbours`` when given.

    Examples
    --------
    >>> find_outliers(read_rows(f).in_splits(("train", "val")), top=5)[0]["score"]   # doctest: +SKIP
    2.7
    """
    rows = rows.originals()
    k = min(NEIGHBOURS, len(rows.images) - 1)
    found = neighbours.nearest(rows, k + 1) if neighbours is not None and k >= 1 else None
    scores = outlier_scores(rows.vectors, rows.labels, k, found=found)
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= min_score][:top]
    return [{**rows.images[i].as_dict(), "suggested": None, "score": round(float(scores[i]), 4)} for i in order]


def find(search: Search) -> dict[str, list]:
    """The audit's entry point (:mod:`pipeline.audit.kinds`): every image of ``search.rows`` by outlier score."""
    return {"outliers": find_outliers(search.rows, top=None, neighbours=search.neighbours)}

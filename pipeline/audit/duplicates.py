"""Find duplicates, label conflicts and leakage across splits in a feature file.

Exact copies come from the ``sha256`` column; near copies (resized, re-encoded) from the cosine
similarity of the cached features (maps are average-pooled first). Only original images (view 0)
are compared; augmented views are near copies by design.

Four kinds of findings, each a list of groups, each group a list of images
(``{"path", "split", "class"}``, plus ``"similarity"`` for near pairs):

- ``exact_duplicates``: byte-identical files in the same split and class;
- ``label_conflicts``: identical or near-identical images under different classes;
- ``cross_split``: identical or near-identical images in different splits (leakage into val/test);
- ``near_duplicates``: near-identical pairs (not byte-identical) in the same split and class.
"""

from __future__ import annotations

import numpy as np

from ..datasets import Entry
from ..exact_copies import EXACT_KINDS, exact_groups, sort_key
from .kinds import Search

KINDS = (*EXACT_KINDS, "near_duplicates")
NEAR_COPIES = 10  # the nearest images of each image that are checked for near copies


def near_pairs(images: list[Entry], vectors: np.ndarray, threshold: float,
               found: tuple[np.ndarray, np.ndarray] | None = None) -> list[tuple[int, int, float]]:
    """Index pairs ``(i, j, cosine)`` with ``i < j``, similarity >= threshold, and different file contents.

    Each image is paired with those of its :data:`NEAR_COPIES` nearest images (``found``: their ``(distances,
    indices)``, when already known; else exact or approximate, as :func:`~pipeline.audit.neighbours.nearest`
    chooses) that are similar enough: a picture with more near copies than that keeps the closest.
    """
    from .neighbours import nearest

    if len(images) < 2:
        return []
    distances, indices = found if found is not None else nearest(vectors, NEAR_COPIES + 1, close_only=True)
    pairs: dict[tuple[int, int], float] = {}  # each pair once, though found from both ends
    for i, n in zip(*np.nonzero(distances <= 1.0 - threshold + 1e-6)):
        a, b = sorted((int(i), int(indices[i, n])))
        if a != b and images[a].sha256 != images[b].sha256:
            pairs[a, b] = max(pairs.get((a, b), -1.0), round(float(1.0 - distances[i, n]), 4))
    return sorted(((a, b, sim) for (a, b), sim in pairs.items()), key=lambda p: (-p[2], p[0], p[1]))


def find_duplicates(images: list[Entry], vectors: np.ndarray, threshold: float,
                    neighbours: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, list]:
    """Exact groups from the hashes, then near pairs (cosine >= ``threshold``; ``neighbours`` as ``found`` in
    :func:`near_pairs`) sorted into the four kinds."""
    found = exact_groups(images)
    found["near_duplicates"] = []
    for i, j, sim in near_pairs(images, vectors, threshold, neighbours):
        a, b = sorted((images[i], images[j]), key=sort_key)
        pair = [{**a.as_dict(), "similarity": sim}, {**b.as_dict(), "similarity": sim}]
        if a.label != b.label:
            found["label_conflicts"].append(pair)
        if a.split != b.split:
            found["cross_split"].append(pair)
        if a.label == b.label and a.split == b.split:
            found["near_duplicates"].append(pair)
    return {k: found[k] for k in KINDS}


def find(search: Search) -> dict[str, list]:
    """The audit's entry point (:mod:`pipeline.audit.kinds`): :func:`find_duplicates` among ``search.rows``."""
    rows = search.rows
    shared = search.neighbours.nearest(rows, NEAR_COPIES + 1) if search.neighbours and len(rows.images) > 1 else None
    return find_duplicates(rows.images, rows.vectors, search.threshold, shared)

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

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import PipelineError
from .store import FeatureFile, Row

KINDS = ("exact_duplicates", "label_conflicts", "cross_split", "near_duplicates")
SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}
POOL_ROWS = 256


@dataclass(frozen=True)
class Image:
    """One original image of the feature file."""

    split: str
    label: str
    path: str
    sha256: str

    def as_dict(self) -> dict:
        return {"path": self.path, "split": self.split, "class": self.label}


def _sort_key(img: Image) -> tuple:
    return (SPLIT_ORDER.get(img.split, 9), img.label, img.path)


def _pooled(f: FeatureFile, split: str, keep: np.ndarray) -> np.ndarray:
    """Feature vectors of the kept rows, maps average-pooled, read in blocks of rows."""
    ds = f.features(split)
    blocks = []
    for start in range(0, ds.shape[0], POOL_ROWS):
        block = ds[start:start + POOL_ROWS].astype(np.float32)[keep[start:start + POOL_ROWS]]
        blocks.append(block.reshape(len(block), -1, block.shape[-1]).mean(axis=1) if block.ndim > 2 else block)
    return np.concatenate(blocks) if blocks else np.zeros((0, ds.shape[-1] if ds.ndim > 1 else 0), np.float32)


def read_images(f: FeatureFile) -> tuple[list[Image], np.ndarray]:
    """The original images of every split and their pooled feature vectors (one row each)."""
    classes = f.classes
    images: list[Image] = []
    vectors = []
    for split in f.splits:
        keep = f.column(split, "view") == 0
        labels, paths, shas = (f.column(split, c)[keep] for c in ("labels", "paths", "sha256"))
        images += [Image(split, classes[int(y)], p, s) for y, p, s in zip(labels, paths, shas)]
        vectors.append(_pooled(f, split, keep))
    vectors = [v for v in vectors if len(v)]
    return images, (np.concatenate(vectors) if vectors else np.zeros((0, 1), np.float32))


def exact_groups(images: Iterable[Image]) -> dict[str, list[dict]]:
    """Byte-identical findings: ``exact_duplicates``, ``label_conflicts`` and ``cross_split`` groups."""
    by_sha: dict[str, list[Image]] = defaultdict(list)
    for img in images:
        by_sha[img.sha256].append(img)
    found: dict[str, list] = {k: [] for k in KINDS[:3]}
    for group in by_sha.values():
        if len(group) < 2:
            continue
        group = sorted(group, key=_sort_key)
        same_place: dict[tuple, list[Image]] = defaultdict(list)
        for img in group:
            same_place[(img.split, img.label)].append(img)
        found["exact_duplicates"] += [[i.as_dict() for i in g] for g in same_place.values() if len(g) > 1]
        if len({i.label for i in group}) > 1:
            found["label_conflicts"].append([i.as_dict() for i in group])
        if len({i.split for i in group}) > 1:
            found["cross_split"].append([i.as_dict() for i in group])
    return found


def near_pairs(images: list[Image], vectors: np.ndarray, threshold: float) -> list[tuple[int, int, float]]:
    """Index pairs ``(i, j, cosine)`` with ``i < j``, similarity >= threshold, and different file contents."""
    from sklearn.neighbors import NearestNeighbors

    if len(images) < 2:
        return []
    nn = NearestNeighbors(radius=1.0 - threshold + 1e-6, metric="cosine", algorithm="brute").fit(vectors)
    distances, indices = nn.radius_neighbors(vectors, sort_results=True)
    pairs = []
    for i, (dist, idx) in enumerate(zip(distances, indices)):
        for d, j in zip(dist, idx):
            if j > i and images[i].sha256 != images[j].sha256:
                pairs.append((i, int(j), round(float(1.0 - d), 4)))
    return sorted(pairs, key=lambda p: (-p[2], p[0], p[1]))


def audit_cache(cache_file: str | os.PathLike, threshold: float = 0.97, output: str | os.PathLike | None = None) -> dict:
    """Report exact and near duplicates, label conflicts and cross-split leakage in a feature file.

    Returns ``{"cache", "threshold", "images", "exact_duplicates", "label_conflicts", "cross_split",
    "near_duplicates"}`` and, with ``output``, ``"sheets"``: one contact-sheet PNG per finding.

    Examples
    --------
    >>> found = audit_cache("cache/urban_rural/mobilenet_v2-224-avg.h5")   # doctest: +SKIP
    >>> found["exact_duplicates"][0]                                   # doctest: +SKIP
    [{'path': 'train/rural/rural22.jpeg', 'split': 'train', 'class': 'rural'}, ...]
    """
    if not 0.0 < threshold <= 1.0:
        raise PipelineError(f"--threshold {threshold} must be a cosine similarity in (0, 1], e.g. 0.97")
    with FeatureFile(cache_file) as f:
        images, vectors = read_images(f)
        root = f.config.get("dataset_root", "")
    found = exact_groups(images)
    found["near_duplicates"] = []
    for i, j, sim in near_pairs(images, vectors, threshold):
        a, b = sorted((images[i], images[j]), key=_sort_key)
        pair = [{**a.as_dict(), "similarity": sim}, {**b.as_dict(), "similarity": sim}]
        if a.label != b.label:
            found["label_conflicts"].append(pair)
        if a.split != b.split:
            found["cross_split"].append(pair)
        if a.label == b.label and a.split == b.split:
            found["near_duplicates"].append(pair)
    result = {"cache": str(cache_file), "threshold": threshold, "images": len(images),
              **{k: found[k] for k in KINDS}}
    if output is not None:
        from .contact_sheet import write_sheets

        result["sheets"] = write_sheets(result, Path(root), Path(output))
    return result


def duplicate_warnings(splits: dict[str, list[Row]], classes: list[str]) -> list[str]:
    """One line per problem for ``transfer extract``: stored byte-identical files across splits or classes."""
    found = exact_groups(Image(split, classes[r.label], r.path, r.sha256)
                         for split, rows in splits.items() for r in rows if r.view == 0)
    lines = []
    for kind, what in (("cross_split", "in more than one split (leakage)"),
                       ("label_conflicts", "under more than one class")):
        if found[kind]:
            example = " = ".join(i["path"] for i in found[kind][0][:2])
            lines.append(f"{len(found[kind])} byte-identical image(s) stored {what}, e.g. {example}; "
                         f"`transfer audit` on the cache lists them all")
    return lines

"""The audit of a feature file: what is wrong with the photos, found from the cached features.

``duplicates``: exact and near copies, label conflicts, leakage across splits; ``sheets``: contact-sheet
PNGs of the findings.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import PipelineError
from ..store import FeatureFile
from .duplicates import KINDS, find_duplicates, read_images


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
    result = {"cache": str(cache_file), "threshold": threshold, "images": len(images),
              **find_duplicates(images, vectors, threshold)}
    if output is not None:
        from .sheets import write_sheets

        result["sheets"] = write_sheets(result, Path(root), Path(output))
    return result


__all__ = ["KINDS", "audit_cache"]

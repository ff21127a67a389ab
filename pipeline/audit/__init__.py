"""The audit of a feature file: what is wrong with the photos, found from the cached features.

``duplicates``: exact and near copies, label conflicts, leakage across splits; ``labels``: images whose
class is probably wrong; ``outliers``: images unlike the rest; ``sheets``: contact-sheet PNGs of the
findings; ``fixes``: the reviewable fix list and applying it to the photo folders.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import PipelineError
from ..store import FeatureFile
from .duplicates import KINDS, find_duplicates
from .vectors import Rows, read_rows

LISTS = ("label_issues", "outliers")
OUTLIERS_SHOWN = 20


def rank_findings(rows: Rows, classes: list[str], top: int | None = None, min_score: float = 0.0) -> dict:
    """``{"label_issues", "outliers"}`` of ``rows``, most suspicious first: every label issue that confident
    learning flags and the 20 highest outliers, or ``top`` of each, none scored below ``min_score``.
    An outlier is not listed again as a label issue (its fix is removal, not another class).

    Examples
    --------
    >>> rank_findings(read_rows(f, augmented=True).in_splits(("train", "val")), f.classes, top=5)  # doctest: +SKIP
    {'label_issues': [...], 'outliers': [...]}
    """
    from .labels import find_label_issues
    from .outliers import find_outliers

    outliers = find_outliers(rows, OUTLIERS_SHOWN if top is None else top, min_score)
    listed = {o["path"] for o in outliers}
    issues = [i for i in find_label_issues(rows, classes) if i["score"] >= min_score and i["path"] not in listed]
    return {"label_issues": issues[:top], "outliers": outliers}


def audit_cache(cache_file: str | os.PathLike, threshold: float = 0.97, output: str | os.PathLike | None = None,
                top: int | None = None, min_score: float = 0.0, include_test: bool = False,
                fix_list: str | os.PathLike | None = None, force: bool = False) -> dict:
    """Report duplicates, leakage, label issues and outliers in a feature file.

    Returns ``{"cache", "threshold", "images", "exact_duplicates", "label_conflicts", "cross_split",
    "near_duplicates", "splits", "label_issues", "outliers"}``; with ``output``, ``"sheets"``: one
    contact-sheet PNG per finding; with ``fix_list``, ``"fix_list"``: the CSV written there (an existing
    one, perhaps reviewed already, is replaced only with ``force``).

    Label issues and outliers are searched in train and val (and test with ``include_test``); ``top`` and
    ``min_score`` as in :func:`rank_findings`.

    Examples
    --------
    >>> found = audit_cache("cache/urban_rural/mobilenet_v2-224-avg.h5")   # doctest: +SKIP
    >>> found["exact_duplicates"][0]                                   # doctest: +SKIP
    [{'path': 'train/rural/rural22.jpeg', 'split': 'train', 'class': 'rural'}, ...]
    >>> found["label_issues"][0]                                       # doctest: +SKIP
    {'path': 'train/urban/urban_3.jpeg', 'split': 'train', 'class': 'urban', 'suggested': 'rural', 'score': 0.91}
    """
    if not 0.0 < threshold <= 1.0:
        raise PipelineError(f"--threshold {threshold} must be a cosine similarity in (0, 1], e.g. 0.97")
    if top is not None and top < 0:
        raise PipelineError(f"--top {top} must be 0 or more")
    if fix_list is not None and not force:
        from .fixes import refuse_existing

        refuse_existing(Path(fix_list))  # before the audit's work, not after
    with FeatureFile(cache_file) as f:
        rows = read_rows(f, augmented=True)
        classes, root = f.classes, f.config.get("dataset_root", "")
    images = rows.originals()
    scope = ("train", "val", "test") if include_test else ("train", "val")
    audited = rows.in_splits(scope)
    result = {"cache": str(cache_file), "threshold": threshold, "images": len(images.images),
              **find_duplicates(images.images, images.vectors, threshold),
              "splits": [s for s in scope if any(e.split == s for e in audited.images)],
              **rank_findings(audited, classes, top, min_score)}
    if output is not None:
        from .sheets import write_sheets

        result["sheets"] = write_sheets(result, Path(root), Path(output))
    if fix_list is not None:
        from .fixes import write_fix_list

        result["fix_list"] = str(write_fix_list(result, fix_list, force))
    return result


__all__ = ["KINDS", "LISTS", "audit_cache", "rank_findings"]

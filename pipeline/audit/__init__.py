"""The audit of a feature file: what is wrong with the photos, found from the cached features.

``kinds``: the table of finding kinds (how each is found and shown); ``duplicates``: exact and near copies,
label conflicts, leakage across splits; ``labels``: images whose class is probably wrong; ``outliers``: images
unlike the rest; ``sheets``: contact-sheet PNGs of the findings; ``fixes``: the reviewable fix list and applying
it to the photo folders.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PipelineError
from .kinds import NEAR_COPY_COSINE, Search, find, group_kinds, image_kinds

if TYPE_CHECKING:
    from ..store import FeatureFile
    from .neighbours import Neighbourhood
    from .vectors import Rows

log = logging.getLogger(__name__)

# the names of the kinds in the table, as shipped: groups of copies, then suspicious images
KINDS = tuple(k.name for k in group_kinds())
LISTS = tuple(k.name for k in image_kinds())


def rank_findings(rows: Rows, classes: list[str], top: int | None = None, min_score: float = 0.0,
                  neighbours: Neighbourhood | None = None) -> dict:
    """Every image kind's findings in ``rows`` (``{"label_issues", "outliers"}``), most suspicious first: as many
    as each kind shows (every label issue that confident learning flags, the 20 highest outliers), or ``top`` of
    each, none scored below ``min_score``.

    An image is listed under one kind only, and kinds whose fix removes the image claim it first: an outlier is
    not listed again as a label issue (its fix is removal, not another class). ``neighbours``: found once for the
    whole audit (:class:`~pipeline.audit.neighbours.Neighbourhood`), else each kind finds its own.

    Examples
    --------
    >>> rank_findings(read_rows(f, augmented=True).in_splits(("train", "val")), f.classes, top=5)  # doctest: +SKIP
    {'label_issues': [...], 'outliers': [...]}
    """
    return ranked(find(image_kinds(), Search(rows, classes, neighbours=neighbours)), top, min_score)


def ranked(found: dict[str, list], top: int | None = None, min_score: float = 0.0) -> dict[str, list]:
    """The image kinds' findings as :func:`rank_findings` lists them, from each kind's complete, sorted findings
    (``found``, as :func:`~pipeline.audit.kinds.find` returns them)."""
    listed: set[str] = set()
    shown = {}
    for kind in sorted(image_kinds(), key=lambda k: k.action != "remove"):
        kept = [x for x in found[kind.name] if x["score"] >= min_score and x["path"] not in listed]
        shown[kind.name] = kept[:kind.shown if top is None else top]
        listed.update(x["path"] for x in shown[kind.name])
    return {k.name: shown[k.name] for k in image_kinds()}


def audit_cache(cache_file: str | os.PathLike, threshold: float = NEAR_COPY_COSINE,
                output: str | os.PathLike | None = None, top: int | None = None, min_score: float = 0.0,
                include_test: bool = False, fix_list: str | os.PathLike | None = None,
                force: bool = False, recompute: bool = False) -> dict:
    """Report duplicates, leakage, label issues and outliers in a feature file.

    Returns ``{"cache", "reused", "threshold", "images", "exact_duplicates", "label_conflicts", "cross_split",
    "near_duplicates", "splits", "label_issues", "outliers"}`` (a key per kind of
    :data:`~pipeline.audit.kinds.FINDINGS`: the group kinds, then the audited splits, then the image kinds);
    with ``output``, ``"sheets"``: one contact-sheet PNG per finding; with ``fix_list``, ``"fix_list"``: the CSV
    written there (an existing one, perhaps reviewed already, is replaced only with ``force``).

    Image kinds (label issues, outliers) are searched in train and val (and test with ``include_test``); ``top``
    and ``min_score`` as in :func:`rank_findings`.

    The complete findings are saved beside the feature file (:mod:`pipeline.audit.saved`); an audit of the same
    version of the file with the same ``threshold`` and ``include_test`` reuses them (``"reused": True``; ``top``
    and ``min_score`` only choose what is listed) unless ``recompute``.

    Examples
    --------
    >>> found = audit_cache("cache/urban_rural/mobilenet_v2-224-avg.h5")   # doctest: +SKIP
    >>> found["exact_duplicates"][0]                                   # doctest: +SKIP
    [{'path': 'train/rural/rural22.jpeg', 'split': 'train', 'class': 'rural'}, ...]
    >>> found["label_issues"][0]                                       # doctest: +SKIP
    {'path': 'train/urban/urban_3.jpeg', 'split': 'train', 'class': 'urban', 'suggested': 'rural', 'score': 0.91}
    """
    if not 0.0 < threshold <= 1.0:
        raise PipelineError(f"--threshold {threshold} must be a cosine similarity in (0, 1], e.g. {NEAR_COPY_COSINE}")
    if top is not None and top < 0:
        raise PipelineError(f"--top {top} must be 0 or more")
    if fix_list is not None and not force:
        from .fixes import refuse_existing

        refuse_existing(Path(fix_list))  # before the audit's work, not after
    from ..store import FeatureFile
    from . import saved

    scope = ("train", "val", "test") if include_test else ("train", "val")
    kept_at = saved.location(cache_file)
    key = saved.key_of(cache_file, threshold=threshold, include_test=include_test)
    with FeatureFile(cache_file) as f:
        classes, root = f.classes, f.config.get("dataset_root", "")
        found, note = (None, "") if recompute else saved.read(kept_at, key, saved.images_of(f), classes, scope)
        reused = found is not None
        if not reused:
            found = _search(f, classes, threshold, scope)
    for line in ([note] if note else []) + ([] if reused else saved.save(kept_at, key, found)):
        log.warning(line)
    result = {"cache": str(cache_file), "reused": reused, **found, **ranked(found, top, min_score)}
    if output is not None:
        from .sheets import write_sheets

        result["sheets"] = write_sheets(result, Path(root), Path(output))
    if fix_list is not None:
        from .fixes import write_fix_list

        result["fix_list"] = str(write_fix_list(result, fix_list, force))
    return result


def _search(f: FeatureFile, classes: list[str], threshold: float, scope: tuple[str, ...]) -> dict:
    """The audit's findings in an open feature file: ``audit_cache``'s result from ``"threshold"`` on, with every
    finding of each image kind (not yet :func:`ranked`)."""
    from .neighbours import Neighbourhood
    from .vectors import read_rows

    rows = read_rows(f, augmented=True)
    images = rows.originals()
    audited = rows.in_splits(scope)
    neighbours = Neighbourhood(images)  # one index for near copies and outliers
    return {"threshold": threshold, "images": len(images.images),
            **find(group_kinds(), Search(images, classes, threshold, neighbours)),
            "splits": [s for s in scope if any(e.split == s for e in audited.images)],
            **find(image_kinds(), Search(audited, classes, threshold, neighbours))}


__all__ = ["KINDS", "LISTS", "audit_cache", "rank_findings", "ranked"]

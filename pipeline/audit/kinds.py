"""Every kind of audit finding in one table: which module finds it and how each output shows it. A new check is
one module with a ``find(search)`` function plus one :data:`FINDINGS` entry.

Two shapes of finding:

- :class:`GroupKind`: groups of images that show the same picture (byte-identical, or near copies by cosine),
  searched among the images of every split (a copy in test is leakage); no fix is proposed.
- :class:`ImageKind`: single suspicious images, scored, most suspicious first, searched in the audited splits
  (train and val; test on request); each proposes a fix-list action and has a mark on the 2-D map. An image
  is listed under one image kind only: kinds whose fix removes the image claim it first, then table order.

No heavy imports here: the CLI reads its defaults and help from this table.

Examples
--------
>>> FINDINGS["outliers"].action, FINDINGS["label_issues"].one
('remove', 'label issue')
>>> listing([k.title for k in image_kinds()])
'label issues and outliers'
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .neighbours import Neighbourhood
    from .vectors import Rows

NEAR_COPY_COSINE = 0.97  # the default --threshold: two different files this similar count as near copies


@dataclass(frozen=True)
class Search:
    """What a check looks at: ``rows`` (images with pooled feature vectors), the dataset's ``classes``, the
    near-copy ``threshold``, and the ``neighbours`` shared by the checks that need them (None: each finds its own).
    """

    rows: Rows
    classes: list[str]
    threshold: float = NEAR_COPY_COSINE
    neighbours: Neighbourhood | None = None


@dataclass(frozen=True)
class Kind:
    """One kind of finding: ``name`` keys the audit result (and ``--json``) and names its contact sheets;
    ``pipeline.audit.<module>.find(search)`` returns ``{name: findings}`` for the kinds it finds."""

    name: str
    module: str

    @property
    def title(self) -> str:
        """The kind in words: headings, sheet titles, the text output."""
        return self.name.replace("_", " ")


@dataclass(frozen=True)
class GroupKind(Kind):
    """Findings are groups of images (``{"path", "split", "class"}``, plus ``"similarity"`` for near copies)."""


@dataclass(frozen=True)
class ImageKind(Kind):
    """Findings are images (``{"path", "split", "class", "suggested", "score"}``), most suspicious first.

    ``one`` names a single finding (the map's legend; with ``_`` for spaces, the fix list's ``finding`` column);
    ``action`` is what the fix list proposes (``relabel`` to ``suggested``, or ``remove``); ``marker`` (matplotlib)
    and ``marks`` (the marker in words, plural) show it on the map; ``score`` says what the score means in the
    text output and ``--min-score``'s help, ``score_explained`` at more length in the HTML report,
    ``score_caption`` formats it on a contact sheet; ``shown`` is how many are listed without ``--top``
    (None: all).
    """

    one: str
    action: str
    marker: str
    marks: str
    score: str
    score_explained: str
    score_caption: str
    shown: int | None = None


FINDINGS: dict[str, Kind] = {k.name: k for k in [
    GroupKind("exact_duplicates", "duplicates"),
    GroupKind("label_conflicts", "duplicates"),
    GroupKind("cross_split", "duplicates"),
    GroupKind("near_duplicates", "duplicates"),
    ImageKind("label_issues", "labels", one="label issue", action="relabel", marker="o", marks="rings",
              score="probability the label is wrong",
              score_explained="out-of-fold probability that the label is wrong",
              score_caption="p(label wrong) {:.2f}"),
    ImageKind("outliers", "outliers", one="outlier", action="remove", marker="X", marks="crosses",
              score="times the typical neighbour distance",
              score_explained="distance to the nearest images, in units of the typical image's",
              score_caption="{:.2f} x typical distance", shown=20),
]}


def group_kinds() -> tuple[GroupKind, ...]:
    """The kinds of :data:`FINDINGS` whose findings are groups of copies, in table order."""
    return tuple(k for k in FINDINGS.values() if isinstance(k, GroupKind))


def image_kinds() -> tuple[ImageKind, ...]:
    """The kinds of :data:`FINDINGS` whose findings are suspicious images, in table order."""
    return tuple(k for k in FINDINGS.values() if isinstance(k, ImageKind))


def find(kinds: Sequence[Kind], search: Search) -> dict[str, list]:
    """The findings of each of ``kinds`` in ``search``, in the order of ``kinds``; each module runs once."""
    found: dict[str, list] = {}
    for module in dict.fromkeys(k.module for k in kinds):
        found.update(importlib.import_module(f"{__package__}.{module}").find(search))
    return {k.name: found[k.name] for k in kinds}


def listing(words: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return " and ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)

"""Byte-identical files grouped by what they mean for a dataset: copies within a class, one picture under two
classes, one picture in two splits (leakage)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable

from .datasets import SPLITS, Entry

SPLIT_ORDER = {split: i for i, split in enumerate(SPLITS)}
EXACT_KINDS = ("exact_duplicates", "label_conflicts", "cross_split")


def sort_key(entry: Entry) -> tuple:
    return (SPLIT_ORDER.get(entry.split, 9), entry.label, entry.path)


def exact_groups(entries: Iterable[Entry]) -> dict[str, list[list[dict]]]:
    """Byte-identical files grouped by kind: ``exact_duplicates`` (same split and class), ``label_conflicts``
    (more than one class), ``cross_split`` (more than one split); each group a sorted list of ``as_dict()``."""
    entries = list(entries)
    counts = Counter(e.sha256 for e in entries)  # counted in C: most photos have no copy
    by_sha: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        if counts[entry.sha256] > 1:
            by_sha[entry.sha256].append(entry)
    found: dict[str, list] = {k: [] for k in EXACT_KINDS}
    for group in by_sha.values():
        if len(group) < 2:
            continue
        group = sorted(group, key=sort_key)
        same_place: dict[tuple, list[Entry]] = defaultdict(list)
        for entry in group:
            same_place[(entry.split, entry.label)].append(entry)
        found["exact_duplicates"] += [[e.as_dict() for e in g] for g in same_place.values() if len(g) > 1]
        if len({e.label for e in group}) > 1:
            found["label_conflicts"].append([e.as_dict() for e in group])
        if len({e.split for e in group}) > 1:
            found["cross_split"].append([e.as_dict() for e in group])
    return found


def duplicate_warnings(entries: Iterable[Entry]) -> list[str]:
    """One line per problem for ``transfer extract``: byte-identical files across splits or classes."""
    found = exact_groups(entries)
    lines = []
    for kind, what in (("cross_split", "in more than one split (leakage)"),
                       ("label_conflicts", "under more than one class")):
        if found[kind]:
            example = " = ".join(i["path"] for i in found[kind][0][:2])
            lines.append(f"{len(found[kind])} byte-identical image(s) stored {what}, e.g. {example}; "
                         f"`transfer audit` on the cache lists them all")
    return lines

"""When to rewrite segments: size tiers, so that a commit of k rows costs O(k) bytes amortized.

Segments are sorted into tiers by their live rows (tier t holds 4**t to 4**(t+1) - 1 rows). A tier that reaches
:data:`MERGE_AT` segments is merged into one segment of the next tier, so every row is rewritten at most once per
tier (log4 N times over its life) and a file holds at most ``MERGE_AT - 1`` segments per tier. A segment whose
dead rows (removed since it was written) outnumber its live ones is rewritten with its live rows only, which
costs no more than the rows removed.
"""

from __future__ import annotations

from dataclasses import dataclass

MERGE_AT = 4


@dataclass(frozen=True)
class Run:
    """A segment as the compaction sees it: rows still published, and rows stored."""

    live: int
    total: int


def wasteful(run: Run) -> bool:
    """Whether a segment holds more removed rows than live ones (then it is rewritten with its live rows)."""
    return 2 * run.live < run.total


def tier(rows: int) -> int:
    return (max(rows, 1).bit_length() - 1) // 2


def plan(runs: list[Run]) -> list[list[int]]:
    """Groups of indices into ``runs``, in order: a group of one run whose dead rows do not outnumber its live
    ones may stay as it is, any other group is rewritten as one new segment. Runs without live rows are left out
    (dropped)."""
    groups = [[i] for i, r in enumerate(runs) if r.live]
    while True:
        by_tier: dict[int, list[int]] = {}
        for n, group in enumerate(groups):
            by_tier.setdefault(tier(sum(runs[i].live for i in group)), []).append(n)
        full = next((members for _, members in sorted(by_tier.items()) if len(members) >= MERGE_AT), None)
        if full is None:
            return sorted(groups)
        merged = [i for n in full for i in groups[n]]
        groups = [g for n, g in enumerate(groups) if n not in full] + [sorted(merged)]

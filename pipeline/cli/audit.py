"""Audit command: duplicates, leakage, label issues and outliers in a cache."""

from __future__ import annotations

from pathlib import Path

import click

from ..audit.kinds import FINDINGS, NEAR_COPY_COSINE, GroupKind, ImageKind, image_kinds, listing
from .common import emit, json_option

LISTED = listing([k.title for k in image_kinds()])  # 'label issues and outliers'
SHOWN = ", ".join(f"every {k.one}" if k.shown is None else f"{k.shown} {k.title}" for k in image_kinds())
SCORES = "; ".join(f"{k.one}: {k.score}" for k in image_kinds())


@click.command()
@click.argument("cache_file", type=click.Path(dir_okay=False))
@click.option("--threshold", default=NEAR_COPY_COSINE, show_default=True, type=float,
              help="Cosine similarity above which two different files count as near copies.")
@click.option("--top", default=None, type=click.IntRange(min=0),
              help=f"Keep the N most suspicious {LISTED} [default: {SHOWN}].")
@click.option("--min-score", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help=f"Drop {LISTED} scored lower ({SCORES}).")
@click.option("--include-test", is_flag=True, help=f"Search test for {LISTED} too (train and val only by default).")
@click.option("--output", default=None, type=click.Path(file_okay=False),
              help="Write a contact-sheet PNG per finding into this folder.")
@click.option("--fix-list", default=None, type=click.Path(dir_okay=False),
              help=f"Write {LISTED} to this CSV for review, then apply it with `transfer relabel`.")
@click.option("--force", is_flag=True, help="Replace an existing --fix-list file (perhaps reviewed already).")
@click.option("--recompute", is_flag=True,
              help="Search again, though the saved audit of this version of the file with these settings could "
                   "be reused (<cache-dir>/audits).")
@json_option
def audit(cache_file: str, threshold: float, top: int | None, min_score: float, include_test: bool,
          output: str | None, fix_list: str | None, force: bool, recompute: bool, as_json: bool) -> None:
    """Find duplicates, leakage, label issues and outliers in a feature file."""
    from ..audit import audit_cache

    emit(audit_cache(cache_file, threshold, output, top=top, min_score=min_score, include_test=include_test,
                     fix_list=fix_list, force=force, recompute=recompute), as_json, _audit_text)


def _group_lines(kind: GroupKind, groups: list[list[dict]]) -> list[str]:
    lines = [f"{kind.title}: {len(groups)}"]
    for group in groups:
        sim = f"  (cosine {group[0]['similarity']:.3f})" if "similarity" in group[0] else ""
        lines.append("  " + " = ".join(f"{g['path']} [{g['split']}/{g['class']}]" for g in group) + sim)
    return lines


def _image_lines(kind: ImageKind, found: list[dict], where: str) -> list[str]:
    lines = [f"{kind.title} in {where}: {len(found)}  (score: {kind.score})"]
    for x in found:
        suggested = f" -> {x['suggested']}" if x.get("suggested") else ""
        lines.append(f"  {x['score']:.2f}  {x['path']} [{x['split']}/{x['class']}{suggested}]")
    return lines


def _audit_text(r: dict) -> str:
    reused = " (the saved audit of this version, reused)" if r.get("reused") else ""
    lines = [f"{r['cache']}: {r['images']} images, near copies at cosine >= {r['threshold']}{reused}"]
    where = "+".join(r["splits"])
    for kind in FINDINGS.values():
        found = r[kind.name]
        lines += _group_lines(kind, found) if isinstance(kind, GroupKind) else _image_lines(kind, found, where)
    if r.get("sheets"):
        lines.append(f"contact sheets: {len(r['sheets'])} in {Path(r['sheets'][0]).parent}")
    if r.get("fix_list"):
        lines.append(f"fix list: {r['fix_list']} (review the action column, then `transfer relabel DATA_DIR {r['fix_list']}`)")
    return "\n".join(lines)

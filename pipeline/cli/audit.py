"""Audit command: duplicates, leakage, label issues and outliers in a cache."""

from __future__ import annotations

from pathlib import Path

import click

from .common import emit, json_option


@click.command()
@click.argument("cache_file", type=click.Path(dir_okay=False))
@click.option("--threshold", default=0.97, show_default=True, type=float,
              help="Cosine similarity above which two different files count as near copies.")
@click.option("--top", default=None, type=click.IntRange(min=0),
              help="Keep the N most suspicious label issues and outliers [default: every label issue, 20 outliers].")
@click.option("--min-score", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Drop label issues and outliers scored lower (label issue: probability the label is wrong; "
                   "outlier: times the typical neighbour distance).")
@click.option("--include-test", is_flag=True, help="Search test for label issues and outliers too (train and val only by default).")
@click.option("--output", default=None, type=click.Path(file_okay=False),
              help="Write a contact-sheet PNG per finding into this folder.")
@click.option("--fix-list", default=None, type=click.Path(dir_okay=False),
              help="Write label issues and outliers to this CSV for review, then apply it with `transfer relabel`.")
@click.option("--force", is_flag=True, help="Replace an existing --fix-list file (perhaps reviewed already).")
@json_option
def audit(cache_file: str, threshold: float, top: int | None, min_score: float, include_test: bool,
          output: str | None, fix_list: str | None, force: bool, as_json: bool) -> None:
    """Find duplicates, leakage, label issues and outliers in a feature file."""
    from ..audit import audit_cache

    emit(audit_cache(cache_file, threshold, output, top=top, min_score=min_score, include_test=include_test,
                     fix_list=fix_list, force=force), as_json, _audit_text)


def _audit_text(r: dict) -> str:
    from ..audit import KINDS

    lines = [f"{r['cache']}: {r['images']} images, near copies at cosine >= {r['threshold']}"]
    for kind in KINDS:
        lines.append(f"{kind.replace('_', ' ')}: {len(r[kind])}")
        for group in r[kind]:
            sim = f"  (cosine {group[0]['similarity']:.3f})" if "similarity" in group[0] else ""
            lines.append("  " + " = ".join(f"{g['path']} [{g['split']}/{g['class']}]" for g in group) + sim)
    where = "+".join(r["splits"])
    lines.append(f"label issues in {where}: {len(r['label_issues'])}  (score: probability the label is wrong)")
    lines += [f"  {x['score']:.2f}  {x['path']} [{x['split']}/{x['class']} -> {x['suggested']}]" for x in r["label_issues"]]
    lines.append(f"outliers in {where}: {len(r['outliers'])}  (score: times the typical neighbour distance)")
    lines += [f"  {x['score']:.2f}  {x['path']} [{x['split']}/{x['class']}]" for x in r["outliers"]]
    if r.get("sheets"):
        lines.append(f"contact sheets: {len(r['sheets'])} in {Path(r['sheets'][0]).parent}")
    if r.get("fix_list"):
        lines.append(f"fix list: {r['fix_list']} (review the action column, then `transfer relabel DATA_DIR {r['fix_list']}`)")
    return "\n".join(lines)

"""Audit command: duplicates and leakage in a cache."""

from __future__ import annotations

from pathlib import Path

import click

from .common import emit, json_option


@click.command()
@click.argument("cache_file", type=click.Path(dir_okay=False))
@click.option("--threshold", default=0.97, show_default=True, type=float,
              help="Cosine similarity above which two different files count as near copies.")
@click.option("--output", default=None, type=click.Path(file_okay=False),
              help="Write a contact-sheet PNG per finding into this folder.")
@json_option
def audit(cache_file: str, threshold: float, output: str | None, as_json: bool) -> None:
    """Find duplicates, label conflicts and train/val/test leakage in a feature file."""
    from ..audit import audit_cache

    emit(audit_cache(cache_file, threshold, output), as_json, _audit_text)


def _audit_text(r: dict) -> str:
    from ..audit import KINDS

    lines = [f"{r['cache']}: {r['images']} images, near copies at cosine >= {r['threshold']}"]
    for kind in KINDS:
        lines.append(f"{kind.replace('_', ' ')}: {len(r[kind])}")
        for group in r[kind]:
            sim = f"  (cosine {group[0]['similarity']:.3f})" if "similarity" in group[0] else ""
            lines.append("  " + " = ".join(f"{g['path']} [{g['split']}/{g['class']}]" for g in group) + sim)
    if r.get("sheets"):
        lines.append(f"contact sheets: {len(r['sheets'])} in {Path(r['sheets'][0]).parent}")
    return "\n".join(lines)

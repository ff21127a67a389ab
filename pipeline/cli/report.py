"""Report command: an HTML page comparing runs."""

from __future__ import annotations

import click

from ..audit.kinds import NEAR_COPY_COSINE
from .common import emit, json_option


@click.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--output", default="report.html", show_default=True, type=click.Path(dir_okay=False),
              help="The HTML file to write (self-contained: opens from disk, no network).")
@click.option("--threshold", default=NEAR_COPY_COSINE, show_default=True, type=float,
              help="The audit's near-copy cosine.")
@click.option("--top", default=12, show_default=True, type=click.IntRange(min=0),
              help="Misclassified val/test images shown per run.")
@json_option
def report(run_dirs: tuple[str, ...], output: str, threshold: float, top: int, as_json: bool) -> None:
    """Write one HTML page comparing RUN_DIRS: heads, curves, confusion matrices, mistakes, audit."""
    from ..report import write_report

    emit(write_report(list(run_dirs), output, threshold, top), as_json,
         lambda r: f"{r['report']}: {r['runs']} run(s), {r['bytes'] / 1e6:.1f} MB")

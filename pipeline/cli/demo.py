"""The demo command: the whole pipeline on the built-in sample."""

from __future__ import annotations

import sys

import click

from .common import emit, json_option, progress_bars, weights_dir_option


@click.command()
@click.option("--workdir", default="sample", show_default=True, type=click.Path(file_okay=False),
              help="Where the sample images and its cache go.")
@weights_dir_option
@json_option
def demo(workdir: str, weights_dir: str | None, as_json: bool) -> None:
    """Run the pipeline end to end on the built-in sample (handwritten digits as 96 px PNGs), ending with a report."""
    from ..demo import run_demo
    from .extract import extract_text, info_text
    from .train import comparison_table

    result = run_demo(workdir, weights_dir, progress=progress_bars(not as_json and sys.stderr.isatty()))
    emit(result, as_json, lambda r: extract_text(r["extract"]) + "\n\n" + info_text(r["info"]) + "\n\n"
         + comparison_table(r["compare"]) + f"\n\nreport: {r['report']} (open it in a browser)\n\nnext:\n"
         + "\n".join(f"  {command}" for command in r["next"]))

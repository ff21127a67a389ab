"""Helpers shared by every command: one error line instead of a traceback, JSON output, progress bars."""

from __future__ import annotations

import json
from typing import Any, Callable

import click

from ..errors import PipelineError


class Group(click.Group):
    """One line instead of a traceback, unless ``--debug``: :class:`PipelineError` (a problem the user
    can fix) exits 2; any other exception (a bug, a full disk, ...) exits 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except PipelineError as exc:
            if ctx.params.get("debug"):
                raise
            click.echo(f"Error: {_first_line(exc)}", err=True)
            ctx.exit(2)
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            click.echo(f"Error: {type(exc).__name__}: {_first_line(exc)} (rerun with --debug for the traceback)", err=True)
            ctx.exit(1)


def _first_line(exc: Exception) -> str:
    """The message of ``exc`` cut to one line (libraries sometimes append pages of detail)."""
    lines = str(exc).strip().splitlines()
    return lines[0].rstrip(":") if lines else type(exc).__name__


def emit(obj: Any, as_json: bool, human: Callable[[Any], str]) -> None:
    """Print ``obj`` as exactly one JSON document, or as text for people."""
    click.echo(json.dumps(obj, default=str) if as_json else human(obj))


def progress_bars(enabled: bool):
    """A factory of per-split tqdm bars (images/s), or None when output is not for a terminal."""
    if not enabled:
        return None
    from tqdm import tqdm

    def bar(split: str, total: int):
        t = tqdm(total=total, desc=f"{split:>5}", unit="img", leave=True, dynamic_ncols=True)

        def update(n: int) -> None:
            t.update(n)
            if t.n >= t.total:
                t.close()

        return update

    return bar


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
weights_dir_option = click.option("--weights-dir", default=None, envvar="TRANSFER_WEIGHTS_DIR",
                                  help="Folder holding Keras weight files (checked before downloading). "
                                       "[env: TRANSFER_WEIGHTS_DIR]")

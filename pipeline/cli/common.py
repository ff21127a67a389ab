"""Helpers shared by every command: one error line instead of a traceback, JSON output, progress bars, and
the options several commands take, each declared once here."""

from __future__ import annotations

import json
import logging
from typing import Any, Callable

import click

from ..config import IN_MEMORY_BYTES, RUNTIME_CHOICES
from ..errors import PipelineError


OUT_OF_MEMORY = ("ResourceExhaustedError", "MemoryError", "OutOfMemoryError")


class Group(click.Group):
    """One line instead of a traceback, unless ``--debug``: :class:`PipelineError` (a problem the user
    can fix) exits 2; Ctrl-C exits 130 (the shell's convention); any other exception (a bug, ...) exits 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted: feature files are left whole, and finished batches are kept for the rerun",
                       err=True)
            ctx.exit(130)
        except PipelineError as exc:
            if ctx.params.get("debug"):
                raise
            click.echo(f"Error: {printable(_first_line(exc))}", err=True)
            ctx.exit(2)
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            hint = ("; lower --batch-size or --image-size" if type(exc).__name__ in OUT_OF_MEMORY
                    else " (rerun with --debug for the traceback)")
            click.echo(f"Error: {type(exc).__name__}: {printable(_first_line(exc))}{hint}", err=True)
            ctx.exit(1)


def _first_line(exc: Exception) -> str:
    """The message of ``exc`` cut to one line (libraries sometimes append pages of detail)."""
    lines = str(exc).strip().splitlines()
    return lines[0].rstrip(":") if lines else type(exc).__name__


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (escape sequences, newlines in a file name) shown as
    ``\\xNN`` escapes, undecodable bytes of a file name as ``\\xNN`` too."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii")
                   for c in _utf8(text))


def _clean(obj: Any, strings: Callable[[str], str]) -> Any:
    """``obj`` with every string (keys too) passed through ``strings``."""
    if isinstance(obj, str):
        return strings(obj)
    if isinstance(obj, dict):
        return {_clean(k, strings): _clean(v, strings) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v, strings) for v in obj]
    return obj


def _utf8(text: str) -> str:
    """``text`` as valid UTF-8: undecodable bytes of a file name (lone surrogates) become ``\\xNN``."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace")


def emit(obj: Any, as_json: bool, human: Callable[[Any], str]) -> None:
    """Print ``obj`` as exactly one JSON document (valid UTF-8, no NaN), or as text for people (names shown
    with :func:`printable`, so a file name cannot move the cursor or forge a line)."""
    if as_json:
        click.echo(json.dumps(_clean(obj, _utf8), default=str, allow_nan=False))
    else:
        click.echo(human(_clean(obj, printable)))


def warn(line: str) -> None:
    """One ``warning:`` line on stderr, made :func:`printable`."""
    click.echo(f"warning: {printable(line)}", err=True)


class _Warnings(logging.Handler):
    """The library's logged warnings as ``warning:`` lines (see :func:`warn`)."""

    def emit(self, record: logging.LogRecord) -> None:
        warn(record.getMessage())


def show_library_warnings() -> None:
    """Print what the ``pipeline`` logger warns about (a note of ``predict``) as ``warning:`` lines."""
    logger = logging.getLogger("pipeline")
    if not any(isinstance(h, _Warnings) for h in logger.handlers):
        logger.addHandler(_Warnings(logging.WARNING))


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
runs_root_option = click.option("--runs-root", default="runs", show_default=True, type=click.Path(file_okay=False),
                                help="Where new run directories go.")
weights_dir_option = click.option("--weights-dir", default=None, envvar="TRANSFER_WEIGHTS_DIR",
                                  help="Folder holding Keras weight files (checked before downloading). "
                                       "[env: TRANSFER_WEIGHTS_DIR]")
stream_option = click.option("--stream/--no-stream", default=None,
                             help="Read train in chunks on every pass (flat memory) or hold it in memory. [default: "
                                  f"stream when train's features (float32) or photos (uint8) exceed "
                                  f"{IN_MEMORY_BYTES / 2**30:g} GiB]")
runtime_option = click.option("--runtime", default="auto", show_default=True, type=click.Choice(RUNTIME_CHOICES),
                              help="Where the frozen base runs: auto picks ONNX Runtime or TensorFlow per backbone "
                                   "(TensorFlow on a GPU and for bfloat16); converted bases are cached in "
                                   "<cache-dir>/models, or in $TRANSFER_MODEL_CACHE when set.")


def seed_option(help: str = "Seed of every random choice, for runs that repeat.") -> Callable:
    """``--seed`` (0 by default), with what it decides in ``help``."""
    return click.option("--seed", default=0, show_default=True, type=int, help=help)


def split_fraction_options(command: Callable) -> Callable:
    """``--val-fraction`` and ``--test-fraction``: the splits carved out of a folder of class folders."""
    for split in ("test", "val"):
        command = click.option(f"--{split}-fraction", default=0.0, type=click.FloatRange(0, 1, max_open=True),
                               help=f"Carve {split} out of DATA_DIR when it holds class folders without splits "
                                    "(stable by path).")(command)
    return command

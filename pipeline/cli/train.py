"""Stage two commands: train, compare, predict, export."""

from __future__ import annotations

import click

from ..deploy.formats import FORMATS as EXPORT_FORMATS
from ..heads import names as head_names
from .common import (emit, json_option, runs_root_option, runtime_option, seed_option, stream_option, warn,
                     weights_dir_option)
from .head_options import HeadOptionsCommand


def _accuracy(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


@click.command(cls=HeadOptionsCommand)
@click.argument("cache_file", type=click.Path(dir_okay=False))
@click.option("--head", default="logreg", show_default=True, type=click.Choice(head_names()))
@click.option("--run-dir", type=click.Path(file_okay=False), default=None, help="[default: runs/<cache>-<head>-<time>]")
@runs_root_option
@seed_option()
@stream_option
@json_option
def train(cache_file: str, head: str, run_dir: str | None, runs_root: str, seed: int, stream: bool | None,
          as_json: bool, **options) -> None:
    """Stage two: fit a head on cached features, evaluate it per split, save a run directory.

    The head's own options follow the common ones; each applies to the heads its help names."""
    from ..training import train as run

    options = {k: v for k, v in options.items() if v is not None}
    emit(run(cache_file, head, options, seed, run_dir, runs_root, stream), as_json, _train_text)


def _train_text(r: dict) -> str:
    chosen = ", ".join(f"{k}={v:g}" for k, v in r["selected"].items())
    lines = [r["run_dir"], f"{r['head']} ({chosen}) fitted in {r['fit_seconds']:.1f} s"]
    lines += [f"  {split:>5}: accuracy {_accuracy(m['accuracy'])} of {m['images']} images"
              for split, m in r["metrics"].items()]
    return "\n".join(lines)


@click.command(cls=HeadOptionsCommand)
@click.argument("cache_file", type=click.Path(dir_okay=False))
@click.option("--heads", default=",".join(head_names()), show_default=True, help="Comma-separated heads to fit.")
@runs_root_option
@seed_option()
@stream_option
@click.option("--report", "report_path", default=None, type=click.Path(dir_okay=False),
              help="Also write the HTML report of these runs here (see `transfer report`).")
@json_option
def compare(cache_file: str, heads: str, runs_root: str, seed: int, stream: bool | None, report_path: str | None,
            as_json: bool, **options) -> None:
    """Fit several heads on the same cached features and print one table.

    A head option goes to the heads that take it (--class-weight balanced: logreg, svm and dense)."""
    from ..training import compare as run

    options = {k: v for k, v in options.items() if v is not None}
    rows = run(cache_file, [h.strip() for h in heads.split(",") if h.strip()], seed, runs_root, options, stream)
    emit(rows, as_json, comparison_table)
    if report_path:
        from ..report import write_report

        runs = [r["run_dir"] for r in rows if r["run_dir"]]
        click.echo(f"report: {write_report(runs, report_path)['report']}", err=True)


def comparison_table(rows: list[dict]) -> str:
    """head | val accuracy | test accuracy | fit seconds, one line per head."""
    lines = [f"{'head':<8} {'val acc':>8} {'test acc':>9} {'fit s':>7}  run"]
    lines += [f"{r['head']:<8} {_accuracy(r['val_accuracy']):>8} {_accuracy(r['test_accuracy']):>9} "
              + (f"{'-':>7}  skipped: {r['skipped']}" if "skipped" in r else f"{r['fit_seconds']:>7.2f}  {r['run_dir']}")
              for r in rows]
    return "\n".join(lines)


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="Write a CSV here instead of printing.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@weights_dir_option
@runtime_option
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
              help="Its models/ folder caches converted bases [default: $TRANSFER_MODEL_CACHE when set, else the "
                   "one beside the run's feature cache].")
@json_option
def predict(run_dir: str, paths: tuple[str, ...], output: str | None, batch_size: int, weights_dir: str | None,
            runtime: str, cache_dir: str | None, as_json: bool) -> None:
    """Classify image files or folders with a trained run (its backbone, then its head)."""
    from ..prediction import predict as run, write_csv
    from ..runs import open_run

    results = run(run_dir, paths, weights_dir, batch_size, runtime, cache_dir)
    for r in results:
        if r.get("error"):
            warn(f"skipped {r['path']}: {r['error']}")
    if output:
        write_csv(results, open_run(run_dir), output)
        click.echo(f"wrote {len(results)} rows to {output}", err=True)
    if as_json or not output:
        emit(results, as_json, _predict_text)


def _predict_text(results: list[dict]) -> str:
    lines = []
    for r in results:
        if r["label"] is None:
            lines.append(f"{r['path']}\t-\t{r.get('error', '')}")
        else:
            probs = "  ".join(f"{c} {p:.3f}" for c, p in r["probabilities"].items())
            lines.append(f"{r['path']}\t{r['label']}\t{probs}")
    return "\n".join(lines)


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--output", required=True, type=click.Path(),
              help="model.keras, model.onnx, model.tflite, or a folder for --format savedmodel.")
@click.option("--format", "fmt", default="keras", show_default=True, type=click.Choice(list(EXPORT_FORMATS)))
@click.option("--data", "data_dir", default=None, type=click.Path(file_okay=False),
              help="The folder the run's features came from, if it moved (its val images check the export).")
@click.option("--check-images", default=200, show_default=True, type=click.IntRange(min=1),
              help="Compare with predict on at most this many val images (train without val).")
@click.option("--calibration-images", default=300, show_default=True, type=click.IntRange(min=1),
              help="tflite-int8: calibrate on this many train images (a stratified random sample).")
@weights_dir_option
@json_option
def export(run_dir: str, output: str, fmt: str, data_dir: str | None, check_images: int, calibration_images: int,
           weights_dir: str | None, as_json: bool) -> None:
    """Write one model from RGB pixels (0..255) to class probabilities, checked against predict."""
    from ..deploy.exporting import export as run

    emit(run(run_dir, output, fmt, weights_dir, data_dir, check_images, calibration_images), as_json, export_table)


def export_table(r: dict) -> str:
    """The file, its input, and one row: how it compares with predict, its size and speed."""
    c = r["check"]
    limit = f"<= {c['tolerance']:.0e}" if c["tolerance"] is not None else f"top-1 >= {c['min_top1']:.0%}"
    shape = ", ".join(map(str, r["input_shape"]))
    return "\n".join([
        f"{r['output']}: ({shape}) {r['input_dtype']} RGB 0..255 -> probabilities of {', '.join(r['classes'])}; "
        f"labels in {r['labels']}",
        f"{'format':<15} {'runtime':<12} {'checked on':<14} {'top-1':>7} {'max diff':>9} {'limit':<14} "
        f"{'size':>9} {'ms/image':>8}",
        f"{r['format']:<15} {r['runtime']:<12} {c['images']:>4} {c['split']:<9} {100 * c['top1_agreement']:>6.1f}% "
        f"{c['max_prob_diff']:>9.1e} {limit:<14} {r['bytes'] / 2**20:>6.2f} MB {r['ms_per_image']:>8.2f}"])

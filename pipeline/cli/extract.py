"""Stage one commands: extract, info, demo."""

from __future__ import annotations

import sys

import click

from .common import emit, json_option, progress_bars


@click.command()
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.option("--backbone", default="mobilenet_v2", show_default=True, help="Registry name, e.g. vgg16, resnet50.")
@click.option("--image-size", type=int, default=None, help="Input size in px [default: the backbone's].")
@click.option("--pooling", default="avg", show_default=True, type=click.Choice(["avg", "max", "none"]))
@click.option("--weights", default="imagenet", show_default=True, help="imagenet, none, or a .h5 file.")
@click.option("--weights-dir", default=None, envvar="TRANSFER_WEIGHTS_DIR",
              help="Folder holding Keras weight files (checked before downloading). [env: TRANSFER_WEIGHTS_DIR]")
@click.option("--preprocess", default="backbone", show_default=True, type=click.Choice(["backbone", "rescale"]))
@click.option("--precision", default="float32", show_default=True, type=click.Choice(["float32", "bfloat16"]))
@click.option("--store-dtype", default="float32", show_default=True, type=click.Choice(["float32", "float16"]))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--cache-dir", default="cache", show_default=True, type=click.Path(file_okay=False))
@click.option("--val-fraction", default=0.0, type=click.FloatRange(0, 1, max_open=True),
              help="Carve val out of a folder of class folders (stable by path).")
@click.option("--test-fraction", default=0.0, type=click.FloatRange(0, 1, max_open=True),
              help="Carve test out of a folder of class folders (stable by path).")
@click.option("--augment", default=0, show_default=True, type=click.IntRange(min=0),
              help="Also store K augmented views of every train image (val/test never).")
@click.option("--augment-policy", default="default", show_default=True,
              help="Steps for --augment, e.g. flip,rotate=0.1,zoom=0.2,brightness=0.2 (see transfer preview).")
@click.option("--seed", default=0, show_default=True, type=int, help="Makes the augmented views reproducible.")
@click.option("--strict", is_flag=True, help="Exit non-zero when any file was skipped.")
@click.option("--engine", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="local: this process; ray: Ray Data on a cluster (pip install 'transfer-pipeline[ray]').")
@click.option("--ray-address", default=None, help="auto, ray://host:port, or host:port [default: start Ray here].")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Inference actors for --engine ray [default: 1].")
@json_option
def extract(data_dir: str, backbone: str, image_size: int | None, pooling: str, weights: str,
            weights_dir: str | None, preprocess: str, precision: str, store_dtype: str, batch_size: int,
            augment: int, augment_policy: str, seed: int,
            cache_dir: str, val_fraction: float, test_fraction: float, strict: bool, engine: str,
            ray_address: str | None, workers: int | None, as_json: bool) -> None:
    """Stage one: run a frozen backbone over DATA_DIR and cache the features in HDF5."""
    from ..extraction import extract as run

    summary = run(data_dir, backbone=backbone, image_size=image_size, pooling=pooling, weights=weights,
                  weights_dir=weights_dir, preprocess=preprocess, precision=precision, store_dtype=store_dtype,
                  batch_size=batch_size, cache_dir=cache_dir, val_fraction=val_fraction, test_fraction=test_fraction,
                  augment=augment, augment_policy=augment_policy, seed=seed,
                  engine=engine, ray_address=ray_address, workers=workers,
                  progress=progress_bars(not as_json and sys.stderr.isatty()))
    for line in summary["warnings"] + summary["notes"]:
        click.echo(f"warning: {line}", err=True)
    emit(summary, as_json, _extract_text)
    if strict and summary["skipped"]:
        raise SystemExit(1)


def _extract_text(s: dict) -> str:
    lines = [f"{s['cache']}",
             "rows: " + ", ".join(f"{k} {v}" for k, v in s["splits"].items()),
             f"computed {s['computed']}, reused {s['reused']}, removed {s['removed']}, skipped {len(s['skipped'])}"
             f" in {s['seconds']:.1f} s" + (f" ({s['images_per_second']:.1f} images/s)" if s["computed"] else "")]
    lines += [f"skipped {x['path']}: {x['reason']}" for x in s["skipped"]]
    return "\n".join(lines)


@click.command()
@click.argument("cache_file", type=click.Path(dir_okay=False))
@json_option
def info(cache_file: str, as_json: bool) -> None:
    """Describe a feature file: its config, classes, rows and shapes per split, errors."""
    from ..info import describe

    emit(describe(cache_file), as_json, _info_text)


def _info_text(d: dict) -> str:
    lines = [d["path"]]
    lines += [f"  {k}: {v}" for k, v in d["config"].items()]
    lines.append(f"  classes ({len(d['classes'])}): {', '.join(d['classes'])}")
    for split, s in d["splits"].items():
        counts = ", ".join(f"{c} {n}" for c, n in s["per_class"].items())
        lines.append(f"  {split}: {s['rows']} rows, features {tuple(s['shape'])} {s['dtype']}  [{counts}]")
    lines.append(f"  errors: {len(d['errors'])}")
    lines += [f"    {e['path']}: {e['reason']}" for e in d["errors"]]
    return "\n".join(lines)


@click.command()
@click.option("--workdir", default="sample", show_default=True, type=click.Path(file_okay=False),
              help="Where the sample images and its cache go.")
@click.option("--weights-dir", default=None, envvar="TRANSFER_WEIGHTS_DIR",
              help="Folder holding Keras weight files. [env: TRANSFER_WEIGHTS_DIR]")
@json_option
def demo(workdir: str, weights_dir: str | None, as_json: bool) -> None:
    """Run the pipeline end to end on the built-in sample (handwritten digits as 96 px PNGs), ending with a report."""
    from ..demo import run_demo
    from .train import comparison_table

    result = run_demo(workdir, weights_dir, progress=progress_bars(not as_json and sys.stderr.isatty()))
    emit(result, as_json, lambda r: _extract_text(r["extract"]) + "\n\n" + _info_text(r["info"]) + "\n\n"
         + comparison_table(r["compare"]) + f"\n\nreport: {r['report']} (open it in a browser)\n\nnext:\n"
         + "\n".join(f"  {command}" for command in r["next"]))

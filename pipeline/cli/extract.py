"""Stage one commands: extract, info, preview."""

from __future__ import annotations

import sys

import click

from .. import engines
from ..config import POOLINGS, PRECISIONS, PREPROCESSINGS, STORE_DTYPES
from .common import (emit, json_option, progress_bars, runtime_option, seed_option, split_fraction_options, warn,
                     weights_dir_option)

ENGINE_PREFIX = "engine_"


def engine_options(command):
    """Add every engine's own options (``--ray-address``, ``--workers``, ...) as declared by the engine."""
    for opts in engines.options().values():
        for o in opts:
            command = click.option(o.flag, ENGINE_PREFIX + o.name, type=o.type, default=None, help=o.help)(command)
    return command



@click.command()
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.option("--backbone", default="mobilenet_v2", show_default=True,
              help="Registry name, e.g. vgg16, densenet121, dinov2_small; or an encoder PATH.onnx with its JSON "
                   "beside it (see docs/backbones.md).")
@click.option("--image-size", type=int, default=None, help="Input size in px [default: the backbone's].")
@click.option("--pooling", default="avg", show_default=True, type=click.Choice(POOLINGS))
@click.option("--weights", default="imagenet", show_default=True,
              help="imagenet (or pretrained), none, a .h5 file, or a KerasHub preset folder.")
@weights_dir_option
@click.option("--preprocess", default="backbone", show_default=True, type=click.Choice(PREPROCESSINGS))
@click.option("--precision", default="float32", show_default=True, type=click.Choice(PRECISIONS))
@click.option("--store-dtype", default="float32", show_default=True, type=click.Choice(STORE_DTYPES))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--cache-dir", default="cache", show_default=True, type=click.Path(file_okay=False))
@split_fraction_options
@click.option("--augment", default=0, show_default=True, type=click.IntRange(min=0),
              help="Also store K augmented views of every train image (val/test never).")
@click.option("--augment-policy", default="default", show_default=True,
              help="Steps for --augment, e.g. flip,rotate=0.1,zoom=0.2,brightness=0.2 (see transfer preview).")
@seed_option("Makes the augmented views reproducible.")
@click.option("--strict", is_flag=True, help="Exit non-zero when any file was skipped.")
@click.option("--follow-links", is_flag=True,
              help="Also read linked folders inside class folders (linked files are always read).")
@click.option("--rehash", is_flag=True,
              help="Read every photo to hash it, even those whose size, times and inode are unchanged.")
@click.option("--engine", default="local", show_default=True, type=click.Choice(engines.ENGINES),
              help="local: this process; ray: Ray Data on a cluster (pip install 'transfer-pipeline[ray]').")
@engine_options
@runtime_option
@json_option
def extract(data_dir: str, backbone: str, image_size: int | None, pooling: str, weights: str,
            weights_dir: str | None, preprocess: str, precision: str, store_dtype: str, batch_size: int,
            augment: int, augment_policy: str, seed: int,
            cache_dir: str, val_fraction: float, test_fraction: float, strict: bool, follow_links: bool,
            rehash: bool, engine: str, runtime: str, as_json: bool, **given) -> None:
    """Stage one: run a frozen backbone over DATA_DIR and cache the features in HDF5."""
    from ..extraction import extract as run

    summary = run(data_dir, backbone=backbone, image_size=image_size, pooling=pooling, weights=weights,
                  weights_dir=weights_dir, preprocess=preprocess, precision=precision, store_dtype=store_dtype,
                  batch_size=batch_size, cache_dir=cache_dir, val_fraction=val_fraction, test_fraction=test_fraction,
                  augment=augment, augment_policy=augment_policy, seed=seed, follow_links=follow_links, rehash=rehash,
                  engine=engine,
                  engine_options={name[len(ENGINE_PREFIX):]: v for name, v in given.items() if v is not None},
                  runtime=runtime,
                  progress=progress_bars(not as_json and sys.stderr.isatty()))
    for line in summary["warnings"] + summary["notes"]:
        warn(line)
    emit(summary, as_json, extract_text)
    if strict and summary["skipped"]:
        raise SystemExit(1)


def extract_text(s: dict) -> str:
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
    from ..cache_info import describe

    emit(describe(cache_file), as_json, info_text)


def info_text(d: dict) -> str:
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
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.option("--split", default="train", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--augment", "policy", default=None,
              help="Show each image beside augmented views, e.g. default or flip,rotate=0.1,zoom=0.2,brightness=0.2.")
@click.option("--output", default="preview.png", show_default=True, type=click.Path(dir_okay=False))
@click.option("--count", default=8, show_default=True, type=click.IntRange(min=1), help="Images to show.")
@click.option("--views", default=4, show_default=True, type=click.IntRange(min=1), help="Augmented views per image.")
@click.option("--image-size", default=160, show_default=True, type=click.IntRange(min=8))
@seed_option("The --seed you will pass to extract.")
@split_fraction_options
@json_option
def preview(data_dir: str, split: str, policy: str | None, output: str, count: int, views: int, image_size: int,
            seed: int, val_fraction: float, test_fraction: float, as_json: bool) -> None:
    """Save a labelled grid of images of DATA_DIR (with --augment: each beside its augmented views)."""
    from ..previewing import preview as run

    result = run(data_dir, split=split, augment=policy, output=output, count=count, views=views,
                 image_size=image_size, seed=seed, val_fraction=val_fraction,
                 test_fraction=test_fraction)
    emit(result, as_json, lambda r: f"{r['output']}: {len(r['images'])} {r['split']} images"
         + (f", {r['views']} views each ({r['policy']})" if r["views"] else ""))

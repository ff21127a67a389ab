"""Augmentation and stage three commands: preview, finetune."""

from __future__ import annotations

import click

from .common import emit, json_option


@click.command()
@click.argument("data_dir", type=click.Path(file_okay=False))
@click.option("--split", default="train", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--augment", "policy", default=None,
              help="Show each image beside augmented views, e.g. default or flip,rotate=0.1,zoom=0.2,brightness=0.2.")
@click.option("--output", default="preview.png", show_default=True, type=click.Path(dir_okay=False))
@click.option("--count", default=8, show_default=True, type=click.IntRange(min=1), help="Images to show.")
@click.option("--views", default=4, show_default=True, type=click.IntRange(min=1), help="Augmented views per image.")
@click.option("--image-size", default=160, show_default=True, type=click.IntRange(min=8))
@click.option("--seed", default=0, show_default=True, type=int, help="The --seed you will pass to extract.")
@click.option("--val-fraction", default=0.0, type=click.FloatRange(0, 1, max_open=True),
              help="As for extract, when DATA_DIR holds class folders without splits.")
@json_option
def preview(data_dir: str, split: str, policy: str | None, output: str, count: int, views: int, image_size: int,
            seed: int, val_fraction: float, as_json: bool) -> None:
    """Save a labelled grid of images of DATA_DIR (with --augment: each beside its augmented views)."""
    from ..preview import preview as run

    result = run(data_dir, split=split, augment=policy, output=output, count=count, views=views,
                 image_size=image_size, seed=seed, val_fraction=val_fraction)
    emit(result, as_json, lambda r: f"{r['output']}: {len(r['images'])} {r['split']} images"
         + (f", {r['views']} views each ({r['policy']})" if r["views"] else ""))

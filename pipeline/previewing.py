"""A labelled grid of a few images of a split, and with a policy each image beside its augmented views.

The views are exactly the ones ``transfer extract --augment K --augment-policy POLICY --seed N``
stores at the same image size, so a user sees what a policy does before paying for it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from . import datasets
from .atomic import replacing
from .augment import augment_view, parse
from .errors import PipelineError
from .images import decode_all


def _pick(manifest: datasets.Manifest, split: str, count: int) -> list[datasets.Entry]:
    """Up to ``count`` entries of ``split``, taking classes in turn so that every class shows."""
    entries = manifest.split(split)
    if not entries:
        raise PipelineError(f"{manifest.root} has no {split} images (it has: {', '.join(manifest.splits)}); "
                            "pass --split with one of those")
    by_class = [[e for e in entries if e.label == c] for c in manifest.classes]
    turns = [group[rank] for rank in range(max(map(len, by_class))) for group in by_class if rank < len(group)]
    return turns[:count]


def preview(data_dir: str | os.PathLike, split: str = "train", augment: str | None = None,
            output: str | os.PathLike = "preview.png", count: int = 8, views: int = 4, image_size: int = 160,
            seed: int = 0, val_fraction: float = 0.0, test_fraction: float = 0.0) -> dict:
    """Draw ``count`` images of ``split`` (with ``augment``: each beside ``views`` augmented versions) to ``output``.

    Returns ``{"output", "split", "policy", "views", "images": [{"path", "label"}], "skipped"}``.

    Examples
    --------
    >>> preview("data/flowers", augment="default,brightness=0.2", output="grid.png")   # doctest: +SKIP
    """
    from matplotlib.figure import Figure

    if count < 1 or views < 1 or image_size < 8:
        raise PipelineError("--count and --views must be at least 1 and --image-size at least 8")
    policy = parse(augment)
    manifest = datasets.scan(data_dir, val_fraction, test_fraction)
    chosen = datasets.hash_files(datasets.Manifest(manifest.root, manifest.classes,
                                                   _pick(manifest, split, count))).entries
    decoded, kept, reasons = decode_all([str(manifest.root / e.path) for e in chosen], image_size)
    skipped = [{"path": chosen[i].path, "reason": reason} for i, reason in sorted(reasons.items())]
    images = []
    for pixels, entry in zip(decoded, (chosen[i] for i in kept)):
        augmented = [augment_view(pixels, policy, entry.sha256, v, seed) for v in range(1, views + 1)] if policy else []
        images.append((entry, [pixels] + augmented))
    if not images:
        raise PipelineError(f"none of the chosen {split} images could be read: {skipped[0]['reason']}")

    if policy:
        rows, cols = len(images), views + 1
        cells = [(i * cols + j, img, f"{e.label}" if j == 0 else f"view {j}")
                 for i, (e, row) in enumerate(images) for j, img in enumerate(row)]
    else:
        cols = min(len(images), 4)
        rows = math.ceil(len(images) / cols)
        cells = [(i, row[0], e.label) for i, (e, row) in enumerate(images)]
    fig = Figure(figsize=(2.2 * cols, 2.4 * rows))
    for index, img, title in cells:
        ax = fig.add_subplot(rows, cols, index + 1)
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{manifest.root.name} / {split}" + (f"   augment: {policy}" if policy else ""), fontsize=10)
    fig.tight_layout()
    out = Path(output)
    with replacing(out) as tmp:
        fig.savefig(tmp, dpi=80)
    return {"output": str(out), "split": split, "policy": str(policy), "views": views if policy else 0,
            "images": [{"path": e.path, "label": e.label} for e, _ in images], "skipped": skipped}

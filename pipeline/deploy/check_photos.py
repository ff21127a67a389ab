"""The run's own photos an export is checked and calibrated on.

File lists come from the run directory (``predictions-<split>.csv``: the images themselves, no augmented
views) under the recorded dataset root; pixels are decoded exactly as ``extract`` decodes them
(:func:`pipeline.images.decode_all`). Samples take the classes in turn, each in a seeded random order, so a
sample of a sorted folder still spans every class (int8 calibrated on one class ruins the others).

Examples
--------
>>> split, files, total = check_files(open_run("runs/r"), limit=200)  # doctest: +SKIP
>>> batches = calibration(open_run("runs/r"), n=300)                 # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import PipelineError
from ..runs import Run

CALIBRATION_BATCH = 25


def stratified(labels: Sequence[str], n: int, seed: int = 0) -> list[int]:
    """Indices of up to ``n`` rows, taking each class in turn (each in a seeded random order).

    >>> sorted(stratified(["a", "a", "a", "b"], 2))
    [2, 3]
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    groups = [rng.permutation(np.flatnonzero(labels == c)).tolist() for c in sorted(set(labels.tolist()))]
    turns = itertools.chain.from_iterable(itertools.zip_longest(*groups))
    return [i for i in turns if i is not None][:n]


def split_files(run: Run, split: str, data_dir: str | os.PathLike | None = None) -> tuple[list[str], list[str]]:
    """``(files, true classes)`` of a split's images that still exist under the dataset root (or ``data_dir``)."""
    rows = run.predictions(split)
    if not rows:
        return [], []
    root = Path(data_dir or run.features.get("dataset_root") or ".")
    if not root.is_dir():
        raise PipelineError(f"dataset folder {root} not found; pass --data with the folder the run's features came from")
    kept = [(str(root / r["path"]), r["true"]) for r in rows if (root / r["path"]).is_file()]
    return [f for f, _ in kept], [c for _, c in kept]


def check_files(run: Run, limit: int = 200, data_dir: str | os.PathLike | None = None) -> tuple[str, list[str], int]:
    """``(split, files, images in the split)``: up to ``limit`` val images (train when there is no val)."""
    for split in ("val", "train"):
        files, classes = split_files(run, split, data_dir)
        if files:
            return split, [files[i] for i in stratified(classes, limit)], len(files)
    raise PipelineError(f"none of the val or train images of {run.dir} is left under the dataset folder to check the "
                        "export on; pass --data with the folder the run's features came from")


def calibration(run: Run, n: int = 300, data_dir: str | os.PathLike | None = None) -> list[np.ndarray]:
    """Float32 pixel batches of up to ``n`` train images (a stratified sample), decoded as ``extract`` does."""
    from ..images import decode_all

    files, classes = split_files(run, "train", data_dir)
    pixels, _, _ = decode_all([files[i] for i in stratified(classes, n)], int(run.features["input_size"]))
    if not len(pixels):
        raise PipelineError(f"no readable train image of {run.dir} to calibrate int8 on; pass --data with the folder "
                            "the run's features came from")
    return [b.astype(np.float32) for b in np.array_split(pixels, math.ceil(len(pixels) / CALIBRATION_BATCH))]

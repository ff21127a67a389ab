"""The built-in sample: scikit-learn's handwritten digits as PNG class folders, and a run over it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic import replacing
from .hashing import stable_fraction

SAMPLE_SIZE = 96


def write_digits(root: str | os.PathLike, size: int = SAMPLE_SIZE) -> Path:
    """Write the 1797 8x8 digits, upscaled to ``size`` px RGB PNGs, as ``root/{train,val,test}/<digit>/``.

    About 70/15/15 by a stable hash; files that already exist are left alone.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    root = Path(root)
    digits = load_digits()
    for i, (image, target) in enumerate(zip(digits.images, digits.target)):
        name = f"digit{i:04d}.png"
        u = stable_fraction(name)
        split = "test" if u < 0.15 else "val" if u < 0.30 else "train"
        path = root / split / str(target) / name
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = (255 - image * (255 / 16)).astype(np.uint8)  # dark ink on white paper
        with replacing(path) as tmp:
            Image.fromarray(pixels).resize((size, size), Image.BILINEAR).convert("RGB").save(tmp)
    return root


def run_demo(workdir: str | os.PathLike = "sample", weights_dir: str | None = None, progress=None) -> dict:
    """Write the sample, extract MobileNetV2 features at 96 px, describe the cache, compare every head on it
    (run directories under ``workdir/runs``) and write the HTML report of those runs, audit included
    (``workdir/report.html``). ``"next"`` lists the commands a newcomer would try after it.

    Examples
    --------
    >>> run_demo("sample", weights_dir="../shared/weights")["report"]   # doctest: +SKIP
    'sample/report.html'
    """
    from .extraction import extract
    from .cache_info import describe
    from .report import write_report
    from .training import compare

    workdir = Path(workdir)
    data = write_digits(workdir / "digits")
    summary = extract(data, backbone="mobilenet_v2", image_size=SAMPLE_SIZE, weights_dir=weights_dir,
                      cache_dir=workdir / "cache", progress=progress)
    rows = compare(summary["cache"], runs_root=workdir / "runs")
    report = write_report([r["run_dir"] for r in rows], workdir / "report.html")
    cache, best = summary["cache"], max(rows, key=lambda r: r["val_accuracy"] or 0)["run_dir"]
    return {"extract": summary, "info": describe(cache), "compare": rows, "report": report["report"],
            "next": [f"transfer audit {cache} --output {workdir / 'audit'} --fix-list {workdir / 'fixes.csv'}",
                     f"transfer relabel {data} {workdir / 'fixes.csv'} --dry-run",
                     f"transfer extract {data} --backbone mobilenet_v2 --image-size {SAMPLE_SIZE} "
                     f"--cache-dir {workdir / 'cache'}",
                     f"transfer predict {best} {data / 'test'}",
                     "transfer extract YOUR_PHOTOS --backbone mobilenet_v2 --image-size 224"]}

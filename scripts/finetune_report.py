"""Val accuracy with and without augmentation, and after fine-tuning, on one dataset: a printed report.

    python scripts/finetune_report.py DATA_DIR --weights-dir DIR [--image-size 160] [--views 4]
        [--policy default] [--unfreeze N] [--epochs 10] [--workdir /tmp/finetune_report]

Stage one runs twice (plain, and with ``--views`` augmented views of every train image), stage two fits
``logreg`` and ``dense`` on both caches, and stage three fine-tunes the plain ``dense`` run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pipeline
from pipeline.finetuning import finetune
from pipeline.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--weights-dir", default=None)
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--policy", default="default")
    parser.add_argument("--val-fraction", type=float, default=0.0)
    parser.add_argument("--unfreeze", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--workdir", default="/tmp/finetune_report")
    args = parser.parse_args()
    work = Path(args.workdir)
    common = dict(backbone=args.backbone, image_size=args.image_size, weights_dir=args.weights_dir,
                  cache_dir=str(work / "cache"), val_fraction=args.val_fraction)

    rows = []
    for views in (0, args.views):
        t = time.perf_counter()
        s = pipeline.extract(args.data_dir, augment=views, augment_policy=args.policy, **common)
        print(f"extract views={views}: {s['splits']} computed {s['computed']} in {time.perf_counter() - t:.0f} s")
        for head in ("logreg", "dense"):
            r = train(s["cache"], head, runs_root=str(work / "runs"))
            rows.append((f"{head}, {'augmented x' + str(views) if views else 'no augmentation'}",
                         r["metrics"]["val"]["accuracy"], r["fit_seconds"], r["run_dir"]))
    dense_plain = next(row[3] for row in rows if row[0] == "dense, no augmentation")
    f = finetune(dense_plain, unfreeze_top=args.unfreeze, epochs=args.epochs, augment=args.policy,
                 runs_root=str(work / "runs"), weights_dir=args.weights_dir)
    rows.append((f"dense fine-tuned (top {f['unfrozen']} layers, {f['epochs_trained']} epochs, kept {f['epoch_kept']})",
                 f["metrics"]["val"]["accuracy"], f["fit_seconds"], f["run_dir"]))

    print(f"\n{Path(args.data_dir).name}, {args.backbone} at {args.image_size} px, policy {args.policy}")
    print(f"{'model':<58} {'val acc':>8} {'fit s':>8}")
    for name, acc, seconds, _ in rows:
        print(f"{name:<58} {acc:>8.3f} {seconds:>8.1f}")


if __name__ == "__main__":
    main()

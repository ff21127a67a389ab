"""Why the cache exists: extract once per backbone, then compare every head on each, in one table.

    python scripts/compare_backbones.py DATA_DIR --backbones mobilenet_v2,mobilenet_025 --image-size 160

Run it again: every feature file is reused (0 computed) and only the small heads are refitted.
"""

from __future__ import annotations

import argparse
import time

from pipeline import compare, extract


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--backbones", default="mobilenet_v2,mobilenet_025")
    parser.add_argument("--heads", default="logreg,dense,svm,knn")
    parser.add_argument("--image-size", type=int, default=None, help="default: each backbone's own")
    parser.add_argument("--pooling", default="avg")
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--weights-dir", default=None, help="folder of Keras weight files (or TRANSFER_WEIGHTS_DIR)")
    parser.add_argument("--cache-dir", default="cache")
    parser.add_argument("--runs-root", default="runs")
    args = parser.parse_args()

    rows = []
    for backbone in args.backbones.split(","):
        start = time.perf_counter()
        summary = extract(args.data_dir, backbone=backbone, image_size=args.image_size, pooling=args.pooling,
                          weights=args.weights, weights_dir=args.weights_dir, cache_dir=args.cache_dir)
        extract_seconds = time.perf_counter() - start
        print(f"{backbone}: {summary['cache']}  computed {summary['computed']}, reused {summary['reused']}"
              f" in {extract_seconds:.1f} s")
        for row in compare(summary["cache"], args.heads.split(","), runs_root=args.runs_root):
            rows.append({"backbone": backbone, "computed": summary["computed"], **row})

    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"
    print(f"\n{'backbone':<16} {'head':<7} {'val acc':>8} {'test acc':>9} {'fit s':>7} {'computed':>9}")
    for r in rows:
        print(f"{r['backbone']:<16} {r['head']:<7} {pct(r['val_accuracy']):>8} {pct(r['test_accuracy']):>9} "
              f"{r['fit_seconds']:>7.2f} {r['computed']:>9}")


if __name__ == "__main__":
    main()

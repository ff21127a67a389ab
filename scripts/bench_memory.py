"""Peak memory of stage one against the number of images: it should stay flat.

    .venv/bin/python scripts/bench_memory.py [--n 700] [--image-size 224] [--pooling none]

Writes N and 4N synthetic JPEGs, extracts each set in a fresh process (so nothing is shared, not even
TensorFlow's start-up), then extracts the 4N set again after adding N more photos: that rerun reuses the
4N rows of the published file, computes N, and commits old rows and new parts together. Prints the peak
resident memory (``ru_maxrss`` of that process) of each run beside the size of the features it wrote.
Features stream to part files and the commit copies them in blocks of ``store.CHUNK_ROWS`` rows, so peak
memory should not grow with N while the features do (the default, unpooled 7x7x256 MobileNet maps at
224 px, are 50 KB per image). It does grow until a split reaches one block (512 rows: 25 MB of these
features), hence the default N = 700 (560 train photos).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def write_images(root: Path, start: int, stop: int, size: int) -> None:
    """Photos ``start..stop-1``: smooth colour gradients with noise, two classes, 80/20 train/val."""
    ramp = np.linspace(0, 1, size)[None, :, None]
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        label = ("a", "b")[i % 2]
        split = "val" if i % 5 == 0 else "train"
        base = rng.uniform(0, 255, 3) * ramp + rng.uniform(0, 255, 3) * (1 - ramp)
        pixels = np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
        path = root / split / label / f"{i:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=85)


def extract_peak_rss(data: Path, cache: Path, args) -> dict:
    """Run ``pipeline.extract`` in a fresh process; what it did and its peak resident memory (Linux: KB)."""
    kwargs = dict(backbone=args.backbone, image_size=args.image_size, pooling=args.pooling, weights="none",
                  batch_size=args.batch_size, cache_dir=str(cache))
    code = ("import json, resource, pipeline\n"
            f"summary = pipeline.extract({str(data)!r}, **{kwargs!r})\n"
            "summary['peak_rss_kb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "print(json.dumps(summary))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"extract failed:\n{done.stderr.strip()}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {"images": sum(summary["splits"].values()), "computed": summary["computed"], "reused": summary["reused"],
            "seconds": summary["seconds"], "peak_rss_mb": round(summary["peak_rss_kb"] / 1024),
            "file_mb": round(Path(summary["cache"]).stat().st_size / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=700, help="images in the small set (the large one has 4N)")
    parser.add_argument("--backbone", default="mobilenet_025")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--pooling", default="none")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--photo-size", type=int, default=256, help="side of the synthetic JPEGs")
    args = parser.parse_args()

    print(f"bench_memory: {args.backbone} {args.image_size} px pooling {args.pooling}, batch {args.batch_size}, "
          f"N = {args.n}, load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_memory-") as tmp:
        scratch = Path(tmp)
        write_images(scratch / "small", 0, args.n, args.photo_size)
        write_images(scratch / "large", 0, 4 * args.n, args.photo_size)
        runs = {"N fresh": extract_peak_rss(scratch / "small", scratch / "cache-small", args),
                "4N fresh": extract_peak_rss(scratch / "large", scratch / "cache-large", args)}
        write_images(scratch / "large", 4 * args.n, 5 * args.n, args.photo_size)
        runs["4N + N new"] = extract_peak_rss(scratch / "large", scratch / "cache-large", args)
    for name, r in runs.items():
        print(f"{name:11s} images {r['images']:5d}  computed {r['computed']:5d}  reused {r['reused']:5d}  "
              f"features file {r['file_mb']:7.1f} MB  peak RSS {r['peak_rss_mb']:6d} MB  {r['seconds']:6.1f} s")
    growth = runs["4N fresh"]["peak_rss_mb"] - runs["N fresh"]["peak_rss_mb"]
    data = runs["4N fresh"]["file_mb"] - runs["N fresh"]["file_mb"]
    print(f"peak RSS grew {growth} MB from N to 4N while the features grew {data:.1f} MB; "
          f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

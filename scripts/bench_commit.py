"""What a commit costs: a feature file of N rows, then a commit that adds 10 rows and one that removes 10.

    nice -n 10 python scripts/bench_commit.py [--rows 100000] [--shape 1280] [--workdir /tmp/bench-commit]
    nice -n 10 python scripts/bench_commit.py --rows 20000 --shape 3 3 1280

The file is built through the store's own writer (finished batches as part files, then a commit), with random
features and made-up keys, so no photos or model are needed. For each commit it prints the wall time and the
bytes the process wrote (``wchar`` of ``/proc/self/io``: every byte handed to ``write``), and the size of the
published file and of its segments. Run it from another checkout (PYTHONPATH) to compare releases.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np

from pipeline.config import FeatureConfig
from pipeline.store import FeatureCache, Row

CONFIG = FeatureConfig("mobilenet_v2", "none", "0" * 64, 96)
BLOCK = 4096  # rows per part file while building


def written() -> int:
    with open("/proc/self/io") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("wchar:"))


def key(n: int) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def splits(numbers: list[int]) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {"train": [], "val": []}
    for n in numbers:
        out["val" if n % 5 == 0 else "train"].append(Row(f"class{n % 2}/photo{n:08d}.jpg", n % 2, key(n)))
    return out


def commit(path: Path, numbers: list[int], shape: tuple) -> dict:
    """Publish ``numbers``, computing the missing rows as random part files first; the cost of the commit."""
    rows = splits(numbers)
    rng = np.random.default_rng(len(numbers))
    with FeatureCache(path, CONFIG) as cache:
        todo = cache.missing(r.key for rs in rows.values() for r in rs)
        for start in range(0, len(todo), BLOCK):
            block = todo[start:start + BLOCK]
            cache.parts.write(block, rng.normal(size=(len(block), *shape)).astype(np.float32))
        before, t = written(), time.perf_counter()
        cache.commit(["class0", "class1"], rows, [])
        seconds, bytes_written = time.perf_counter() - t, written() - before
    segments = path.with_name(path.name + ".segments")
    return {"seconds": round(seconds, 3), "written_mb": round(bytes_written / 1e6, 3),
            "file_mb": round(path.stat().st_size / 1e6, 3),
            "segments_mb": round(sum(p.stat().st_size for p in segments.iterdir()) / 1e6, 1) if segments.is_dir() else 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--shape", type=int, nargs="+", default=[1280], help="one row's shape: 1280, or 3 3 1280")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench-commit"))
    args = ap.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    path = args.workdir / CONFIG.file_name()
    shape = tuple(args.shape)
    numbers = list(range(args.rows))
    report = {"rows": args.rows, "row_shape": list(shape), "build": commit(path, numbers, shape)}
    report["append_10"] = commit(path, numbers + list(range(args.rows, args.rows + 10)), shape)
    report["remove_10"] = commit(path, numbers[10:] + list(range(args.rows, args.rows + 10)), shape)
    print(json.dumps(report))
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Crash drill: SIGKILL `transfer extract` while it adds photos to a cache, rerun, compare.

    python scripts/crash_drill.py DATA_DIR [--kill-after 5] [--from-first-batch] [--backbone mobilenet_v2]
        [--image-size 160] [--weights imagenet] [--weights-dir DIR] [--workdir /tmp/crash-drill]

A working copy of DATA_DIR gets 60% of its photos (chosen by a stable hash of the path) and is
extracted. The other 40% are added, and a second run is killed with SIGKILL ``--kill-after`` seconds
after it starts (or after its first saved batch, with ``--from-first-batch``). The drill then checks
that the published file is still whole with the old rows, reruns, and compares the result with an
uninterrupted run over the full copy. It prints one report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.datasets import is_image
from pipeline.hashing import stable_fraction
from pipeline.store import FeatureFile

TRANSFER = str(Path(sys.executable).with_name("transfer"))


def photos(root: Path) -> list[str]:
    return sorted(Path(d, f).relative_to(root).as_posix()
                  for d, _, files in os.walk(root) for f in files if is_image(f))


def copy(root: Path, dest: Path, files: list[str]) -> None:
    for rel in files:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, dest / rel)


def extract(data: Path, cache: Path, args: list[str]) -> dict:
    out = subprocess.run([TRANSFER, "extract", str(data), "--cache-dir", str(cache), *args, "--json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def table(path: str | Path) -> dict[str, np.ndarray]:
    with FeatureFile(path) as f:
        return {p: x for s in f.splits for p, x in zip(f.column(s, "paths"), f.features(s)[()])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("--kill-after", type=float, default=5.0, help="seconds before the SIGKILL")
    ap.add_argument("--from-first-batch", action="store_true", help="count them from the first saved batch")
    ap.add_argument("--backbone", default="mobilenet_v2")
    ap.add_argument("--image-size", default="160")
    ap.add_argument("--weights", default="imagenet")
    ap.add_argument("--weights-dir", default=os.environ.get("TRANSFER_WEIGHTS_DIR"))
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/crash-drill"))
    a = ap.parse_args()
    args = ["--backbone", a.backbone, "--image-size", a.image_size, "--weights", a.weights]
    args += ["--weights-dir", a.weights_dir] if a.weights_dir else []

    shutil.rmtree(a.workdir, ignore_errors=True)
    data, cache, reference = a.workdir / a.data_dir.name, a.workdir / "cache", a.workdir / "reference"
    files = photos(a.data_dir)
    old = [f for f in files if stable_fraction(f) < 0.6]
    added = [f for f in files if stable_fraction(f) >= 0.6]
    copy(a.data_dir, data, old)
    published = extract(data, cache, args)["cache"]
    copy(a.data_dir, data, added)

    start = time.monotonic()
    run = subprocess.Popen([TRANSFER, "extract", str(data), "--cache-dir", str(cache), *args],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_batch, deadline = None, None if a.from_first_batch else start + a.kill_after
    while run.poll() is None:
        now = time.monotonic()
        if first_batch is None and list(cache.glob("*/*.parts-*/part-*.h5")):
            first_batch = now - start
            deadline = deadline or now + a.kill_after
        if deadline is not None and now >= deadline:
            run.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    run.wait()
    killed_at = time.monotonic() - start
    after_kill = table(published)  # raises if the published file were damaged

    resumed = extract(data, cache, args)
    full = extract(data, reference, args)
    got, want = table(resumed["cache"]), table(full["cache"])
    diff = max((float(np.abs(got[p] - want[p]).max()) for p in want), default=0.0)
    report = {
        "photos": {"old": len(old), "added": len(added)},
        "killed": run.returncode == -signal.SIGKILL, "killed_after_s": round(killed_at, 1),
        "first_batch_after_s": None if first_batch is None else round(first_batch, 1),
        "published_rows_after_kill": len(after_kill), "old_rows_intact": sorted(after_kill) == sorted(old),
        "rerun_computed": resumed["computed"], "rerun_reused": resumed["reused"],
        "same_rows_as_uninterrupted": sorted(got) == sorted(want), "max_abs_diff": diff,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

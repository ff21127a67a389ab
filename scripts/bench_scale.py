"""Wall time, CPU time and peak memory of each command at scale, each run as a fresh `transfer` process.

    .venv/bin/python scripts/bench_scale.py N [--steps extract] [--backbone mobilenet_v2] [--image-size 96]
                                              [--pooling avg] [--weights none] [--workdir DIR]

Synthesizes N small photos (64x64 JPEG noise around one colour per class, 80/20 train/val) in a temporary
folder, then measures, each in its own process, what a batch script would run night after night:

- ``extract cold``: every photo read, hashed and computed;
- ``extract no-op``: nothing changed: the stat index vouches for every photo, none is read, nothing is computed
  or written;
- ``extract +10``: 10 new photos: exactly those are read and computed.

Each row prints the process's wall time (start-up and imports included), its CPU time (user + system, less noisy
than wall time on a shared machine) and its peak resident memory (both from ``wait4``), beside what the command
says it did (``computed``, ``hashed``). Photos are made older than the stat index's racy window before the cold
run, as a nightly run would find them.
Other commands of the scale issue (train per head, compare, audit, report) are one function each in ``STEPS``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

COLOURS = [(200, 50, 40), (40, 60, 200), (40, 170, 60), (220, 200, 40), (150, 60, 180),
           (40, 190, 200), (240, 130, 30), (120, 120, 120), (90, 50, 20), (250, 250, 250)]
RACY_WINDOW_S = 2.1  # pipeline.statindex.GRANULARITY_NS, and a little
CLI = "from pipeline.cli import main; main(prog_name=\"transfer\")"


@dataclass
class Bench:
    """What the steps share: settings, the photo folder, the cache, and what earlier steps made."""

    n: int
    args: argparse.Namespace
    work: Path
    made: dict = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.work / "photos"

    @property
    def cache(self) -> Path:
        return self.work / "cache"


@dataclass
class Measured:
    """One row of the table."""

    work: str
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    did: str = ""


def write_photos(root: Path, start: int, stop: int, size: int = 64) -> None:
    """Photos ``start..stop-1``: noise around one colour per class (10 classes), every fifth one in val."""
    for i in range(start, stop):
        rng = np.random.default_rng(i)
        label = i % len(COLOURS)
        pixels = np.clip(np.array(COLOURS[label]) + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
        path = root / ("val" if i % 5 == 0 else "train") / f"class{label}" / f"{i:07d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)


def transfer(args: list[str]) -> tuple[dict, float, float, float]:
    """``transfer ARGS --json`` in a fresh process: its summary, wall seconds, CPU seconds and peak resident MB."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", CLI, *args, "--json"], stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode:
            sys.exit(f"transfer {' '.join(args)} exited {proc.returncode}:\n{err.read().decode()[-3000:]}")
        cpu = usage.ru_utime + usage.ru_stime
        return json.loads(out.read()), seconds, cpu, usage.ru_maxrss / 1024  # Linux: KB


def extract_rows(bench: Bench) -> list[Measured]:
    """Extract cold, then a rerun with nothing changed, then one with 10 new photos."""
    a = bench.args
    command = ["extract", str(bench.data), "--backbone", a.backbone, "--image-size", str(a.image_size),
               "--pooling", a.pooling, "--weights", a.weights, "--cache-dir", str(bench.cache)]
    if a.weights_dir:
        command += ["--weights-dir", a.weights_dir]
    rows = []

    def run(work: str) -> dict:
        summary, seconds, cpu, peak = transfer(command)
        rows.append(Measured(work, seconds, cpu, peak, f"computed {summary['computed']}, hashed {summary['hashed']}, "
                                                        f"hash {summary['timings']['hash']:.2f} s, "
                                                        f"commit {summary['timings']['commit']:.2f} s"))
        return summary

    bench.made["features"] = run("extract cold")["cache"]
    run("extract no-op")
    write_photos(bench.data, bench.n, bench.n + 10)
    run("extract +10")
    return rows


STEPS: dict[str, Callable[[Bench], list[Measured]]] = {"extract": extract_rows}


def table(n: int, rows: list[Measured]) -> str:
    lines = ["| work | N | wall s | CPU s | peak RSS MB | what it did |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.work} | {n} | {r.seconds:.1f} | {r.cpu_seconds:.1f} | {r.peak_rss_mb:.0f} | {r.did} |"
              for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, help="photos to synthesize")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of: {', '.join(STEPS)}")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--pooling", default="avg")
    parser.add_argument("--weights", default="none", help="none (random init: same speed), imagenet or a file")
    parser.add_argument("--weights-dir", default=None)
    parser.add_argument("--workdir", default=None, help="an empty folder to keep photos and cache in "
                                                         "(default: a temporary folder, deleted)")
    args = parser.parse_args()
    steps = [s for s in args.steps.split(",") if s]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {', '.join(STEPS)}")
    if args.workdir and Path(args.workdir).exists() and any(Path(args.workdir).iterdir()):
        parser.error(f"--workdir {args.workdir} is not empty")

    with tempfile.TemporaryDirectory(prefix="bench_scale-") as tmp:
        bench = Bench(args.n, args, Path(args.workdir or tmp))
        started = time.perf_counter()
        write_photos(bench.data, 0, args.n)
        print(f"bench_scale: {args.n} photos written in {time.perf_counter() - started:.1f} s; {args.backbone} "
              f"{args.image_size} px pooling {args.pooling}, weights {args.weights}; "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        time.sleep(RACY_WINDOW_S)
        rows = [row for step in steps for row in STEPS[step](bench)]
    print(table(args.n, rows))


if __name__ == "__main__":
    main()

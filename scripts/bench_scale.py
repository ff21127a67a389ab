"""Wall time, CPU time and peak memory of each command at scale, each run as a fresh `transfer` process.

    .venv/bin/python scripts/bench_scale.py N [--steps extract,train,compare,audit,report] [--rows]
                                              [--heads logreg,dense,svm,knn] [--compare-heads HEADS]
                                              [--stream | --no-stream]
                                              [--backbone mobilenet_v2]
                                              [--image-size 96] [--pooling avg] [--weights none] [--workdir DIR]

Synthesizes N small photos (64x64 JPEG noise around one colour per class, 80/20 train/val) in a temporary
folder, then measures, each in its own process, what a batch script would run night after night:

- ``extract cold``: every photo read, hashed and computed;
- ``extract no-op``: nothing changed: the stat index vouches for every photo, none is read, nothing is computed
  or written;
- ``extract +10``: 10 new photos: exactly those are read and computed;
- ``train <head>`` per head of ``--heads``, ``compare`` (the same heads), ``audit`` (contact sheets and fix
  list), ``report`` (of the first head's run), on the extracted features.

With ``--rows`` no photos are made: the stage-two steps run on a feature file of N rows written in the
documented layout (``scripts/bench_audit_scale.py``'s: MobileNetV2-shaped pooled rows, 10 classes, 80/10/10
train/val/test, 3% of labels flipped, planted copies), so N can be a million.

Each row prints the process's wall time (start-up and imports included), its CPU time (user + system, which a
shared machine disturbs less) and its peak resident memory (``ru_maxrss`` from ``wait4``), beside what the
command says it did. Photos are made older than the stat index's racy window before the cold run, as a
nightly run would find them. Each command is one function in ``STEPS``.
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


class Refused(Exception):
    """A command that exited 2 (a clear refusal): its message, wall seconds, CPU seconds and peak MB."""

    def __init__(self, message: str, seconds: float, usage):
        super().__init__(message)
        self.seconds, self.cpu, self.peak = seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def transfer(args: list[str]) -> tuple[dict, float, float, float]:
    """``transfer ARGS --json`` in a fresh process: its summary, wall seconds, CPU seconds and peak resident MB."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", CLI, *args, "--json"], stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode == 2:  # a refusal the user can act on, e.g. knn asked to train streaming
            raise Refused(err.read().decode().strip().splitlines()[-1], seconds, usage)
        if proc.returncode:
            sys.exit(f"transfer {' '.join(args)} exited {proc.returncode}:\n{err.read().decode()[-3000:]}")
        return json.loads(out.read()), seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # KB


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


SYNTHESIZE = """
import json, sys
from pathlib import Path
from bench_audit_scale import write_cache
planted = write_cache(Path(sys.argv[1]), int(sys.argv[2]))
Path(sys.argv[3]).write_text(json.dumps({k: sorted(v) for k, v in planted.items()}))
"""


def features(bench: Bench) -> str:
    """The feature file the stage-two steps read: the extracted one, or N synthetic rows (written once, by a child
    process: a child's peak RSS counts its parent's at the fork, so this process stays small)."""
    if "features" not in bench.made:
        path, planted = bench.work / "synthetic" / "synthetic.h5", bench.work / "planted.json"  # audits/ beside
        if not (path.exists() and planted.exists()):
            path.parent.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", SYNTHESIZE, str(path), str(bench.n), str(planted)], check=True,
                           cwd=Path(__file__).parent)
            print(f"bench_scale: {bench.n} rows written in {time.perf_counter() - started:.1f} s", flush=True)
        bench.made["planted"] = {k: set(v) for k, v in json.loads(planted.read_text()).items()}
        bench.made["features"] = str(path)
    return bench.made["features"]


def streaming(bench: Bench) -> list[str]:
    """``--stream`` / ``--no-stream`` when told, for train and compare; nothing lets them choose."""
    return {None: [], True: ["--stream"], False: ["--no-stream"]}[bench.args.stream]


def accuracy(metrics: dict, split: str) -> str:
    value = metrics.get(split, {}).get("accuracy")
    return "" if value is None else f"{split} {100 * value:.2f}%"


def train_rows(bench: Bench, heads: list[str] | None = None) -> list[Measured]:
    """``train`` of each head of ``--heads`` (or ``heads``); a head refused (knn streaming) is a row saying so."""
    rows = []
    for head in heads or bench.args.heads.split(","):
        command = ["train", features(bench), "--head", head, "--runs-root", str(bench.work / "runs"), *streaming(bench)]
        try:
            r, seconds, cpu, peak = transfer(command)
        except Refused as refusal:
            rows.append(Measured(f"train {head}", refusal.seconds, refusal.cpu, refusal.peak, f"refused: {refusal}"))
            continue
        bench.made.setdefault("run", r["run_dir"])
        did = ", ".join(filter(None, [accuracy(r["metrics"], "val"), accuracy(r["metrics"], "test"),
                                      "streamed" if r["streamed"] else "in memory", f"fit {r['fit_seconds']:.1f} s"]))
        rows.append(Measured(f"train {head}", seconds, cpu, peak, did))
    return rows


def compare_rows(bench: Bench) -> list[Measured]:
    heads = bench.args.compare_heads or bench.args.heads
    r, seconds, cpu, peak = transfer(["compare", features(bench), "--heads", heads, "--runs-root",
                                      str(bench.work / "runs"), *streaming(bench)])
    did = "; ".join(f"{x['head']} skipped" if "skipped" in x else
                    f"{x['head']} val {100 * (x['val_accuracy'] or 0):.2f}%" for x in r)
    return [Measured("compare", seconds, cpu, peak, did)]


def audit_rows(bench: Bench) -> list[Measured]:
    r, seconds, cpu, peak = transfer(["audit", features(bench), "--output", str(bench.work / "sheets"),
                                      "--fix-list", str(bench.work / "fixes.csv")])
    found = {x["path"] for x in r["label_issues"]}
    did = f"{len(found)} label issues"
    flipped = bench.made.get("planted", {}).get("flipped")
    if flipped:
        hit = len(found & flipped)
        did += f", recall {hit / len(flipped):.3f}, precision {hit / max(1, len(found)):.3f}"
    return [Measured("audit", seconds, cpu, peak, did)]


def report_rows(bench: Bench) -> list[Measured]:
    if "run" not in bench.made:  # the first head's run, trained here (not measured)
        train_rows(bench, bench.args.heads.split(",")[:1])
    r, seconds, cpu, peak = transfer(["report", bench.made["run"], "--output", str(bench.work / "report.html")])
    return [Measured("report", seconds, cpu, peak, f"page {r['bytes'] / 1e6:.1f} MB")]


STEPS: dict[str, Callable[[Bench], list[Measured]]] = {
    "extract": extract_rows, "train": train_rows, "compare": compare_rows, "audit": audit_rows,
    "report": report_rows}


HEADER = "| work | N | wall s | CPU s | peak RSS MB | what it did |\n|---|---|---|---|---|---|"


def line(n: int, r: Measured) -> str:
    return f"| {r.work} | {n} | {r.seconds:.1f} | {r.cpu_seconds:.1f} | {r.peak_rss_mb:.0f} | {r.did} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, help="photos (or, with --rows, feature rows) to synthesize")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of: {', '.join(STEPS)}")
    parser.add_argument("--rows", action="store_true", help="N synthetic feature rows instead of photos "
                                                            "(the stage-two steps only)")
    parser.add_argument("--heads", default="logreg,dense,svm,knn", help="heads to train and compare")
    parser.add_argument("--compare-heads", default=None, help="heads to compare, when not --heads")
    parser.add_argument("--stream", default=None, action=argparse.BooleanOptionalAction,
                        help="pass --stream / --no-stream to train and compare (default: they choose)")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--pooling", default="avg")
    parser.add_argument("--weights", default="none", help="none (random init: same speed), imagenet or a file")
    parser.add_argument("--weights-dir", default=None)
    parser.add_argument("--workdir", default=None, help="an empty folder to keep photos and cache in (default: a "
                                                         "temporary folder, deleted); with --rows, a folder whose "
                                                         "synthetic/synthetic.h5 and planted.json a run left are "
                                                         "reused")
    args = parser.parse_args()
    steps = [s for s in args.steps.split(",") if s and not (args.rows and s == "extract")]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {', '.join(STEPS)}")
    if args.workdir and Path(args.workdir).exists() and any(Path(args.workdir).iterdir()) and not args.rows:
        parser.error(f"--workdir {args.workdir} is not empty")

    with tempfile.TemporaryDirectory(prefix="bench_scale-") as tmp:
        bench = Bench(args.n, args, Path(args.workdir or tmp))
        bench.work.mkdir(parents=True, exist_ok=True)
        if not args.rows:
            started = time.perf_counter()
            write_photos(bench.data, 0, args.n)
            print(f"bench_scale: {args.n} photos written in {time.perf_counter() - started:.1f} s; {args.backbone} "
                  f"{args.image_size} px pooling {args.pooling}, weights {args.weights}", flush=True)
            time.sleep(RACY_WINDOW_S)
        print(f"bench_scale: load average {os.getloadavg()[0]:.2f}", flush=True)
        print(HEADER, flush=True)
        for step in steps:  # each row as it is measured: a long run can be read, or stopped, on the way
            for row in STEPS[step](bench):
                print(line(args.n, row), flush=True)


if __name__ == "__main__":
    main()

"""``transfer predict`` of a few photos in a fresh process, per head and runtime: what a batch script waits for.

    .venv/bin/python scripts/bench_predict.py DATA_DIR --weights-dir DIR [--backbone mobilenet_v2]
        [--image-size 160] [--photos 20] [--heads logreg,dense] [--repeat 5]

Extracts DATA_DIR into a temporary cache (``--runtime auto``, which also fills the model cache), trains one run
per head, then times ``transfer predict RUN_DIR PHOTO... --json`` on ``--photos`` val photos (classes in turn)
in fresh processes: each head on ``--runtime auto`` and on ``--runtime tensorflow`` (predict as it was before
ONNX), interleaved after one warm-up each. Reports the median wall seconds, their spread (min-max) and the
CPU seconds of the child; then, in one more process per head, whether TensorFlow, Keras or scikit-learn was
imported at all, and that both runtimes gave the same labels.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
TRANSFER = [str(Path(sys.executable).with_name("transfer"))]
PROBE = ("import sys\nfrom pipeline.cli import main\ntry:\n    main(sys.argv[1:], standalone_mode=False)\n"
         "finally:\n    print(json.dumps({m: m in sys.modules for m in ('tensorflow', 'keras', 'sklearn')}), "
         "file=sys.stderr)\n")


def transfer(*args: str):
    done = subprocess.run([*TRANSFER, *args, "--json"], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"transfer {args[0]} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_predict(run_dir: str, photos: list[str], runtime: str) -> tuple[float, float, list[str]]:
    wall, cpu = time.perf_counter(), children_cpu()
    out = transfer("predict", run_dir, *photos, "--runtime", runtime)
    return time.perf_counter() - wall, children_cpu() - cpu, [p["label"] for p in out]


def imported(run_dir: str, photos: list[str]) -> dict[str, bool]:
    done = subprocess.run([sys.executable, "-c", "import json\n" + PROBE, "predict", run_dir, *photos, "--json"],
                          capture_output=True, text=True)
    return json.loads(done.stderr.strip().splitlines()[-1])


def val_photos(data_dir: str, count: int) -> list[str]:
    """``count`` val photos, the classes in turn."""
    from pipeline import datasets

    manifest = datasets.scan(data_dir)
    split = "val" if "val" in manifest.splits else manifest.splits[0]
    by_class: dict[str, list[str]] = {}
    for entry in manifest.split(split):
        by_class.setdefault(entry.label, []).append(str(manifest.root / entry.path))
    chosen, queues = [], [iter(v) for v in by_class.values()]
    while len(chosen) < count and queues:
        for queue in list(queues):
            photo = next(queue, None)
            if photo is None:
                queues.remove(queue)
            elif len(chosen) < count:
                chosen.append(photo)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--weights-dir", default=os.environ.get("TRANSFER_WEIGHTS_DIR"))
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--heads", default="logreg,dense")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    photos = val_photos(args.data_dir, args.photos)
    if args.weights_dir:
        os.environ["TRANSFER_WEIGHTS_DIR"] = args.weights_dir  # every transfer command below finds the file
    with tempfile.TemporaryDirectory(prefix="bench_predict-") as tmp:
        summary = transfer("extract", args.data_dir, "--backbone", args.backbone, "--image-size",
                           str(args.image_size), "--cache-dir", f"{tmp}/cache")
        runs = {head: transfer("train", summary["cache"], "--head", head, "--run-dir", f"{tmp}/run-{head}")["run_dir"]
                for head in args.heads.split(",")}
        print(f"bench_predict: {len(photos)} photos of {args.data_dir}, {args.backbone} {args.image_size} px, "
              f"extract runtime {summary['runtime']}, median of {args.repeat}, load average "
              f"{os.getloadavg()[0]:.2f}", flush=True)
        cases = {(head, runtime): run for head, run in runs.items() for runtime in ("auto", "tensorflow")}
        results: dict[tuple[str, str], list] = {case: [] for case in cases}
        for case, run in cases.items():  # warm-up: the page cache, and any conversion
            timed_predict(run, photos, case[1])
        for _ in range(args.repeat):
            for case, run in cases.items():
                results[case].append(timed_predict(run, photos, case[1]))
        print(f"{'head':8s} {'runtime':10s} {'wall s':>7s} {'min-max':>12s} {'CPU s':>6s}  imported")
        for (head, runtime), got in results.items():
            walls = [w for w, _, _ in got]
            modules = imported(cases[head, runtime], photos) if runtime == "auto" else {}
            shown = ", ".join(m for m, yes in modules.items() if yes) or ("none of TF/Keras/sklearn" if modules else "")
            print(f"{head:8s} {runtime:10s} {statistics.median(walls):7.2f} {min(walls):5.2f}-{max(walls):<5.2f} "
                  f"{statistics.median(c for _, c, _ in got):6.2f}  {shown}")
        for head in runs:
            same = results[head, "auto"][-1][2] == results[head, "tensorflow"][-1][2]
            print(f"{head}: both runtimes gave the same {len(photos)} labels: {same}")
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""The audit and the report at scale: wall time, peak memory, and what the audit finds, on N synthetic rows.

Writes a feature file of N rows in the documented layout (``cache/README.md``, through ``pipeline.store``'s
writer) shaped like MobileNetV2's pooled features: 1,280 non-negative floats a row, 10 classes (a centre each,
a shared low-rank spread, noise), 80/10/10 train/val/test. Planted: labels flipped on 3% of train+val, near
copies (a row plus a little noise, another file) of 0.2% of the images, exact copies (same sha256, another
path) of 0.1%. Then, each in its own process: ``transfer audit`` (with contact sheets and a fix list),
``transfer train --head logreg`` and ``transfer report`` of that run, printing wall seconds and peak RSS of
each, the audit's recall and precision on the flips, and how many near and exact copies it found.

    python scripts/bench_audit_scale.py 20000 [--out /tmp/audit-scale] [--no-report] [--json]

The photos do not exist: sheets and the report show grey placeholders, which cost as much to draw.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DIM, CLASSES, SPREAD = 1280, 10, 64
FLIPPED, NEAR, EXACT = 0.03, 0.002, 0.001
BATCH = 4096


def synthesize(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(features (n, DIM) float32, labels (n,))``: class centres plus a low-rank spread plus noise, >= 0."""
    rng = np.random.default_rng(seed)
    centres = rng.gamma(1.0, 1.0, (CLASSES, DIM)).astype(np.float32)
    basis = rng.normal(0, 1, (SPREAD, DIM)).astype(np.float32) / 8
    y = rng.integers(0, CLASSES, n)
    X = np.empty((n, DIM), np.float32)
    for s in range(0, n, BATCH):
        m = min(BATCH, n - s)
        X[s:s + m] = (centres[y[s:s + m]] + rng.normal(0, 1, (m, SPREAD)).astype(np.float32) @ basis
                      + rng.normal(0, 0.6, (m, DIM)).astype(np.float32))
    np.maximum(X, 0, out=X)
    return X, y


def write_cache(path: Path, n: int, seed: int = 0) -> dict:
    """The feature file, and what was planted: ``{"flipped", "near", "exact"}`` (paths)."""
    from pipeline.config import FeatureConfig
    from pipeline.store import FeatureCache, Row

    rng = np.random.default_rng(seed + 1)
    X, y = synthesize(n, seed)
    classes = [f"class{c}" for c in range(CLASSES)]
    split = np.array(["train", "val", "test"])[np.searchsorted([0.8, 0.9], rng.random(n), side="right")]
    sha = [f"{i:064x}" for i in range(n)]
    near = rng.choice(n, int(NEAR * n), replace=False)
    source = rng.choice(np.setdiff1d(np.arange(n), near), len(near))
    X[near], y[near] = X[source], y[source]  # a near copy of another image: the same picture, re-encoded
    X[near] += rng.normal(0, 0.02, X[near].shape).astype(np.float32)
    exact = rng.choice(np.setdiff1d(np.arange(n), near), int(EXACT * n), replace=False)
    twins = rng.choice(np.setdiff1d(np.arange(n), np.concatenate([near, exact])), len(exact), replace=False)
    for a, b in zip(exact, twins):
        sha[a], X[a], y[a] = sha[b], X[b], y[b]
    given = y.copy()
    audited = np.flatnonzero(split != "test")
    flipped = rng.choice(np.setdiff1d(audited, np.concatenate([near, exact, twins])), int(FLIPPED * len(audited)),
                         replace=False)
    given[flipped] = (y[flipped] + rng.integers(1, CLASSES, len(flipped))) % CLASSES
    paths = [f"{split[i]}/{classes[given[i]]}/img{i:07d}.jpg" for i in range(n)]

    config = FeatureConfig(backbone="mobilenet_v2", weights="imagenet", weights_sha256="0" * 64, input_size=96,
                           dataset_root=str(path.parent / "photos"))
    with FeatureCache(path, config) as cache:
        first = {}
        for s in range(0, n, BATCH):
            keys = [(sha[i], 0) for i in range(s, min(s + BATCH, n)) if first.setdefault(sha[i], i) == i]
            cache.parts.write(keys, X[[first[k[0]] for k in keys]])
        rows = {name: [Row(paths[i], int(given[i]), sha[i]) for i in sorted(np.flatnonzero(split == name),
                                                                           key=lambda i: paths[i])]
                for name in ("train", "val", "test")}
        cache.commit(classes, rows, [])
    return {name: {paths[i] for i in rows} for name, rows in (("flipped", flipped), ("near", near), ("exact", exact))}


def measured(command: list[str]) -> tuple[float, float, float, str]:
    """Run ``command``; ``(wall seconds, CPU seconds, peak RSS in GB, stdout)`` (CPU seconds tell more than wall
    time on a shared machine)."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"{' '.join(command)} exited {child.returncode}")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1e6, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int)
    parser.add_argument("--out", type=Path, default=Path("/tmp/audit-scale"))
    parser.add_argument("--no-report", action="store_true", help="skip training a run and the report")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "synthetic" / f"synthetic-{args.n}.h5"  # <cache-dir>/<dataset>/: its saved audit stays in --out
    cache.parent.mkdir(exist_ok=True)
    cache.unlink(missing_ok=True)
    start = time.perf_counter()
    planted = write_cache(cache, args.n)
    result = {"rows": args.n, "write_seconds": round(time.perf_counter() - start, 1)}

    transfer = [str(Path(sys.executable).with_name("transfer"))]
    wall, cpu, peak, out = measured(transfer + ["audit", str(cache), "--json", "--output", str(args.out / "sheets"),
                                           "--fix-list", str(args.out / "fixes.csv")])
    found = json.loads(out)
    issues = {x["path"] for x in found["label_issues"]}
    hit = len(issues & planted["flipped"])
    copies = {g["path"] for kind in ("near_duplicates", "cross_split", "label_conflicts") for group in found[kind]
              for g in group}
    exact = {g["path"] for group in found["exact_duplicates"] + found["cross_split"] + found["label_conflicts"]
             for g in group}
    result["audit"] = {"seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "peak_rss_gb": round(peak, 2),
                       "label_issues": len(issues), "recall": round(hit / max(len(planted["flipped"]), 1), 3),
                       "precision": round(hit / max(len(issues), 1), 3),
                       "near_copies_found": f"{len(copies & planted['near'])}/{len(planted['near'])}",
                       "exact_copies_found": f"{len(exact & planted['exact'])}/{len(planted['exact'])}",
                       "sheets": len(found.get("sheets", []))}
    print("audit:", json.dumps(result["audit"]), file=sys.stderr, flush=True)  # long runs: each result as it comes
    if not args.no_report:
        wall, cpu, peak, out = measured(transfer + ["train", str(cache), "--head", "logreg", "--json",
                                               "--runs-root", str(args.out / "runs")])
        run = json.loads(out)["run_dir"]
        result["train_logreg"] = {"seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
                                  "peak_rss_gb": round(peak, 2)}
        print("train:", json.dumps(result["train_logreg"]), file=sys.stderr, flush=True)
        wall, cpu, peak, out = measured(transfer + ["report", run, "--output", str(args.out / "report.html"), "--json"])
        result["report"] = {"seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "peak_rss_gb": round(peak, 2),
                            "page_mb": round(json.loads(out)["bytes"] / 1e6, 2)}
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()

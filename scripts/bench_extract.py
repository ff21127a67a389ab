"""Stage-one speed benchmark on one dataset: ``transfer extract`` against the bound and what users would write.

    .venv/bin/python scripts/bench_extract.py DATA_DIR --backbone mobilenet_v2 --image-size 160 --weights-dir DIR [--json]

The headline table (the default section) times, with the same network, input size and precision:
  bound     the TensorFlow runtime's compiled forward pass on an in-memory uint8 batch (no decode, no I/O),
            ``--batch-size``, timed over the dataset's images: as many batches as extract runs, the last one
            padded like extract's; ``bound_onnx`` the same batches through the base converted to ONNX Runtime
  tutorial  the tutorials' loop: ``ImageDataGenerator(rescale=1./255).flow_from_directory`` + ``predict`` per 20
  keras     ``image_dataset_from_directory`` + ``model.predict`` (see ``bench_baselines.py``)
  extract   ``pipeline.extract`` cold (a new feature file) in a fresh process, ``runtime="tensorflow"`` (the
            engine as it was before ONNX) and ``runtime="onnx"`` with the converted model cached: each one's
            ``images_per_second`` (the compute phase, as ``--json`` reports it) and whole run's wall time;
            ``runtime="onnx"`` with an empty model cache (the first run: conversion included); then warm,
            rerun with nothing to compute; where ``--runtime auto`` picks TensorFlow (VGG16, bfloat16), also
            ``runtime="auto"`` cold, to show it costs nothing over the TensorFlow runtime
  limit     the forward pass's FLOPs per image (``hardware.forward_flops``) at this CPU's float32 matmul rate
            (``hardware.matmul_peak``, numpy, the fastest of 7): the images/s no runtime can beat
and prints images/s and each as a ratio of the bound and of the limit. Baselines run per split folder (total
images over total time); all rows are interleaved pass by pass after one warm-up pass each. ONNX rows run
for float32 only (bfloat16 stays on TensorFlow).

Every measurement is warmed up, repeated ``--repeat`` times and reported as the median, in images per second
(wall clock; ``best`` is the fastest pass) and CPU milliseconds per image (this process and its finished
children, which other processes on a busy machine disturb much less). Ratios (bfloat16 against float32, XLA against the
plain compiled graph) come from interleaved runs in the same process, so they hold on a busy machine;
the load average is printed at the start and end of every section so noisy numbers show.

Other sections (``--sections``) break stage one down:
  decode   ``pipeline.images.load_image`` over every file, one thread
  forward  the engine's compiled forward pass on a fixed random batch (4 calls), float32 and bfloat16
           (``--jit`` adds the same graph compiled with XLA)
  engine   ``LocalEngine.run`` over every file: thread-pool decode overlapped with inference, part files written
  extract  ``pipeline.extract`` in a fresh process (TensorFlow import, hashing, commit included), then a rerun
           that reuses every row
  accuracy (``--accuracy``) the ``logreg`` head on float32 and bfloat16 features: train -> val, and
           repeated 5-fold cross-validation over train + val (paired: same folds for both)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PRECISIONS = ("float32", "bfloat16")
FORWARD_BATCHES = 4  # per timed call: long enough that one scheduler hiccup does not decide the median


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (``extract`` runs in a child)."""
    return sum(os.times()[:4])


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    fn()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def interleaved(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, tuple[float, float, float]]:
    """Median wall, median CPU and best wall seconds of each function after one warm-up call, alternating."""
    for fn in fns.values():
        fn()
    runs: dict[str, list] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            runs[name].append(timed(fn))
    return {name: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r), min(w for w, _ in r))
            for name, r in runs.items()}


def rate(n: int, times: tuple[float, float, float]) -> dict:
    wall, cpu, best = times
    return {"images_per_second": round(n / wall, 1), "best": round(n / best, 1), "cpu_ms_per_image": round(1000 * cpu / n, 2)}


def section(report: dict, name: str, result: dict) -> None:
    report[name] = {**result, "load_average_after": load()}
    if name == "headline":
        print_headline(result)
    else:
        print(f"{name:9s} {json.dumps(result)}   [load {load()}]", flush=True)


def bench_decode(files: list[str], size: int, repeat: int) -> dict:
    from pipeline.images import load_image

    def decode_all():
        for f in files:
            load_image(f, size)

    return rate(len(files), interleaved({"decode": decode_all}, repeat)["decode"])


def engine_for(args, precision: str, runtime: str = "tensorflow", model_cache: str = "cache/models"):
    from pipeline import backbones
    from pipeline.engines import FrozenBase
    from pipeline.engines.local import LocalEngine

    spec = backbones.get(args.backbone)
    weights = backbones.resolve_weights(spec, args.image_size, args.weights, args.weights_dir)
    return LocalEngine(FrozenBase(spec, args.image_size, args.pooling, "backbone", precision, weights, args.batch_size,
                           runtime=runtime, model_cache=model_cache))


def bench_forward(args) -> dict:
    import numpy as np
    import tensorflow as tf

    batch = np.random.default_rng(0).integers(0, 256, (args.batch_size, args.image_size, args.image_size, 3), np.uint8)
    engines = {p: engine_for(args, p) for p in PRECISIONS}
    for engine in engines.values():
        engine.runtime.build()
    fns = {p: (lambda e=e: [e.runtime.features(batch) for _ in range(FORWARD_BATCHES)]) for p, e in engines.items()}
    if args.jit:
        infer = engines["float32"].runtime._infer.python_function  # the engine's own graph, compiled with XLA
        xla = tf.function(infer, jit_compile=True)
        fns["float32_xla"] = lambda: [xla(tf.constant(batch)).numpy() for _ in range(FORWARD_BATCHES)]
    times = interleaved(fns, args.repeat)
    out = {name: rate(FORWARD_BATCHES * args.batch_size, t) for name, t in times.items()}
    out["bfloat16_speedup"] = round(times["float32"][0] / times["bfloat16"][0], 2)
    out["bfloat16_cpu_speedup"] = round(times["float32"][1] / times["bfloat16"][1], 2)
    if args.jit:
        out["xla_speedup"] = round(times["float32"][0] / times["float32_xla"][0], 2)
    return out


def bench_engine(args, files: list[str], scratch: Path) -> dict:
    from pipeline.store import Parts

    engine = engine_for(args, args.precision)
    keys = [(str(i), 0) for i in range(len(files))]
    first = timed(engine.runtime.build)
    computed = []

    def run_all():
        parts = Parts(scratch / f"parts-{time.time_ns()}")
        computed.append(engine.run(files, keys, parts).computed)
        parts.clear()

    out = rate(len(files), interleaved({"engine": run_all}, args.repeat)["engine"])
    return {**out, "computed": computed[-1], "build_seconds": round(first[0], 2)}


def extract_in_subprocess(args, cache: Path, precision: str, runtime: str = "tensorflow") -> dict:
    kwargs = dict(backbone=args.backbone, image_size=args.image_size, pooling=args.pooling, weights=args.weights,
                  weights_dir=args.weights_dir, batch_size=args.batch_size, precision=precision, cache_dir=str(cache),
                  runtime=runtime)
    code = f"import json, pipeline; print(json.dumps(pipeline.extract({args.data_dir!r}, **{kwargs!r})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"extract failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_extract(args, scratch: Path) -> dict:
    runs = [extract_in_subprocess(args, scratch / f"cache-{i}", args.precision) for i in range(args.repeat)]
    rerun = extract_in_subprocess(args, scratch / "cache-0", args.precision)
    median = sorted(runs, key=lambda s: s["seconds"])[len(runs) // 2]
    return {"seconds": median["seconds"], "timings": median["timings"], "computed": median["computed"],
            "all_seconds": [s["seconds"] for s in runs], "rerun_seconds": rerun["seconds"],
            "rerun_computed": rerun["computed"]}


def bench_headline(args, files: list[str], scratch: Path) -> dict:
    """The issue's table: the bounds, the tutorials' loop, plain Keras and ``transfer extract`` (cold on each
    runtime, first run with conversion, warm), same network, input size and precision, interleaved pass by
    pass; images/s, the ratio to the TensorFlow bound and to this CPU's limit."""
    import numpy as np

    from pipeline import backbones
    from pipeline.assemble import assemble
    from pipeline.runtimes import auto
    from bench_baselines import plain_keras, split_folders, tutorial_loop
    from hardware import forward_flops, matmul_peak

    with_onnx = args.precision == "float32"
    engine = engine_for(args, args.precision)
    engine.runtime.build()
    spec = backbones.get(args.backbone)
    model, base = assemble(spec, args.image_size, args.pooling, engine.job.weights, "backbone", args.precision)
    folders = split_folders(args.data_dir)
    batch = np.random.default_rng(0).integers(0, 256, (args.batch_size, args.image_size, args.image_size, 3), np.uint8)
    batches = -(-len(files) // args.batch_size)  # the forward passes extract makes: the last batch is padded
    counts: dict[str, int] = {"bound": len(files), "bound_onnx": len(files)}
    summaries: dict[str, list[dict]] = {"extract_cold": [], "extract_onnx": [], "extract_onnx_first": []}
    onnx_cache = scratch / "onnx"  # its models/ keeps the converted base; the feature file goes each pass

    def cold(name: str, runtime: str, cache: Callable[[], Path]):
        def run():
            summaries[name].append(extract_in_subprocess(args, cache(), args.precision, runtime))
            counts[name] = summaries[name][-1]["computed"]
        return run

    def fresh_features() -> Path:
        shutil.rmtree(onnx_cache / Path(args.data_dir).resolve().name, ignore_errors=True)
        return onnx_cache

    fns = {"bound": lambda: [engine.runtime.features(batch) for _ in range(batches)],
           "tutorial": lambda: counts.__setitem__("tutorial", tutorial_loop(base, folders, args.image_size)),
           "keras": lambda: counts.__setitem__("keras", plain_keras(model, folders, args.image_size,
                                                                     args.batch_size)),
           "extract_cold": cold("extract_cold", "tensorflow",
                                lambda: scratch / f"cold-{len(summaries['extract_cold'])}")}
    if auto.choose(args.backbone, args.precision) == "tensorflow":
        summaries["extract_auto"] = []
        fns["extract_auto"] = cold("extract_auto", "auto", lambda: scratch / f"auto-{len(summaries['extract_auto'])}")
    if with_onnx:
        onnx_engine = engine_for(args, args.precision, "onnx", str(onnx_cache / "models"))
        onnx_engine.runtime.build()  # converts once, into the cache the extract_onnx runs use
        fns["bound_onnx"] = lambda: [onnx_engine.runtime.features(batch) for _ in range(batches)]
        fns["extract_onnx"] = cold("extract_onnx", "onnx", fresh_features)
        fns["extract_onnx_first"] = cold("extract_onnx_first", "onnx",
                                         lambda: scratch / f"first-{len(summaries['extract_onnx_first'])}")
    peak = matmul_peak()
    times = interleaved(fns, args.repeat)
    peak = max(peak, matmul_peak())
    last_cache = scratch / f"cold-{len(summaries['extract_cold']) - 1}"
    warm_runs: list[dict] = []
    times["extract_warm"] = interleaved(
        {"warm": lambda: warm_runs.append(extract_in_subprocess(args, last_cache, args.precision))}, args.repeat)["warm"]
    counts["extract_warm"] = len(files)

    rows = {name: {"images": counts[name], **rate(counts[name], t), "seconds": round(t[0], 2)}
            for name, t in times.items()}
    for name, runs in summaries.items():
        if runs:
            measured = sorted(runs[1:], key=lambda s: s["images_per_second"])  # runs[0] was the warm-up
            median = measured[len(measured) // 2]
            rows[f"{name}_compute"] = {"images": median["computed"], "images_per_second": median["images_per_second"],
                                       "timings": median["timings"], "runtime": median["runtime"]}
    flops = forward_flops(model)
    rows["limit"] = {"images": len(files), "images_per_second": round(peak * 1e9 / flops, 1),
                     "gflops_per_image": round(flops / 1e9, 3), "matmul_gflops": round(peak, 1)}
    bound, limit = rows["bound"]["images_per_second"], rows["limit"]["images_per_second"]
    for row in rows.values():
        row["x_bound"] = round(row["images_per_second"] / bound, 2)
        row["x_limit"] = round(row["images_per_second"] / limit, 2)
    out = {"rows": {name: rows[name] for name in LABELS if name in rows}}
    compute = {name: rows[f"{name}_compute"]["images_per_second"] for name in summaries if f"{name}_compute" in rows}
    tutorial = rows["tutorial"]["images_per_second"]
    out["tensorflow_compute_vs_tutorial"] = round(compute["extract_cold"] / tutorial, 2)
    if with_onnx:
        out["onnx_compute_vs_tutorial"] = round(compute["extract_onnx"] / tutorial, 2)
        out["onnx_vs_tensorflow_compute"] = round(compute["extract_onnx"] / compute["extract_cold"], 2)
        whole = {name: rows[name]["seconds"] for name in summaries}
        out["onnx_vs_tensorflow_whole_run"] = round(whole["extract_cold"] / whole["extract_onnx"], 2)
        out["first_run_vs_tensorflow"] = round(whole["extract_cold"] / whole["extract_onnx_first"], 2)
    if "extract_auto" in summaries:
        out["auto_vs_tensorflow_whole_run"] = round(rows["extract_cold"]["seconds"] / rows["extract_auto"]["seconds"], 2)
    out["warm_computed"] = warm_runs[-1]["computed"]
    return out


LABELS = {"limit": "limit: forward FLOPs at this CPU's matmul rate",
          "bound": "bound: TensorFlow compiled forward pass, in memory",
          "bound_onnx": "bound: ONNX Runtime, in memory",
          "tutorial": "tutorials' loop: ImageDataGenerator + predict per 20",
          "keras": "plain Keras: image_dataset_from_directory + predict",
          "extract_cold_compute": "extract --runtime tensorflow: compute phase",
          "extract_onnx_compute": "extract --runtime onnx, cached: compute phase",
          "extract_onnx_first_compute": "extract --runtime onnx, first run: compute phase",
          "extract_cold": "extract --runtime tensorflow: whole run, fresh process",
          "extract_onnx": "extract --runtime onnx, cached: whole run, fresh process",
          "extract_onnx_first": "extract --runtime onnx, first run (converts): whole run",
          "extract_auto_compute": "extract --runtime auto: compute phase",
          "extract_auto": "extract --runtime auto: whole run, fresh process",
          "extract_warm": "transfer extract, warm: nothing to compute"}


def print_headline(result: dict) -> None:
    print(f"\n{'':56s} {'images':>6s} {'images/s':>9s} {'best':>7s} {'CPU-ms/img':>10s} {'x bound':>7s} "
          f"{'x limit':>7s}")
    for name, row in result["rows"].items():
        cpu = row.get("cpu_ms_per_image", "")
        print(f"{LABELS[name]:56s} {row['images']:6d} {row['images_per_second']:9.1f} {row.get('best', ''):>7} "
              f"{cpu:>10} {row['x_bound']:7.2f} {row['x_limit']:7.2f}")
    limit = result["rows"]["limit"]
    print(f"limit: {limit['gflops_per_image']} GFLOPs per image at {limit['matmul_gflops']} GFLOP/s")
    print(", ".join(f"{k} {v}" for k, v in result.items() if k != "rows") + "\n", flush=True)


def bench_accuracy(args, scratch: Path) -> dict:
    """The ``logreg`` head on float32 and bfloat16 features: train -> val, and repeated 5-fold CV over both
    splits with the same folds for the two precisions (a paired difference, far less noisy than one val split)."""
    import numpy as np
    from sklearn.model_selection import RepeatedStratifiedKFold

    from pipeline import load, make_head

    data, out = {}, {}
    for precision in PRECISIONS:
        cache = extract_in_subprocess(args, scratch / f"accuracy-{precision}", precision)["cache"]
        X, y, _ = load(cache, "train")
        X_val, y_val, _ = load(cache, "val")
        out[f"{precision}_val"] = round(100 * make_head("logreg").fit(X, y).score(X_val, y_val), 2)
        data[precision] = (np.concatenate([X, X_val]), np.concatenate([y, y_val]))
    y = data["float32"][1]
    folds = list(RepeatedStratifiedKFold(n_splits=5, n_repeats=4, random_state=0).split(y, y))
    scores = {p: np.array([100 * make_head("logreg").fit(X[a], y[a]).score(X[b], y[b]) for a, b in folds])
              for p, (X, _) in data.items()}
    diff = scores["bfloat16"] - scores["float32"]
    out.update({"float32_cv": round(scores["float32"].mean(), 2), "bfloat16_cv": round(scores["bfloat16"].mean(), 2),
                "cv_difference_points": round(diff.mean(), 2),
                "cv_difference_stderr": round(diff.std(ddof=1) / np.sqrt(len(diff)), 2)})
    return out


def job_parser(doc: str, repeat: int) -> argparse.ArgumentParser:
    """The arguments every stage-one benchmark shares: data, network, batch, repeats."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--pooling", default="avg")
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--weights-dir")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=repeat)
    return parser


def main() -> None:
    parser = job_parser(__doc__, repeat=3)
    parser.add_argument("--jit", action="store_true", help="also time the forward pass compiled with XLA")
    parser.add_argument("--accuracy", action="store_true", help="also compare logistic regression on float32 and bfloat16 features")
    parser.add_argument("--sections", default="headline",
                        help="comma-separated: headline, decode, forward, engine, extract (default: headline)")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="also print the report as JSON, or write it to FILE")
    args = parser.parse_args()

    from pipeline import backbones, datasets

    args.image_size = backbones.check_size(backbones.get(args.backbone), args.image_size)
    manifest = datasets.scan(args.data_dir)
    files = [str(manifest.root / e.path) for s in manifest.splits for e in manifest.split(s)]
    wanted = args.sections.split(",") + (["accuracy"] if args.accuracy else [])
    report = {"data": str(manifest.root), "files": len(files), "backbone": args.backbone, "image_size": args.image_size,
              "pooling": args.pooling, "weights": args.weights, "precision": args.precision,
              "batch_size": args.batch_size, "repeat": args.repeat, "cpus": os.cpu_count(), "load_average_start": load()}
    print(f"bench_extract: {report['data']} ({len(files)} files), {args.backbone} {args.image_size} px {args.pooling}, "
          f"weights {args.weights}, batch {args.batch_size}, precision {args.precision}, median of {args.repeat}, "
          f"{os.cpu_count()} CPUs, load average {load()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_extract-") as tmp:
        scratch = Path(tmp)
        steps = {"headline": lambda: bench_headline(args, files, scratch),
                 "decode": lambda: bench_decode(files, args.image_size, args.repeat),
                 "forward": lambda: bench_forward(args),
                 "engine": lambda: bench_engine(args, files, scratch),
                 "extract": lambda: bench_extract(args, scratch),
                 "accuracy": lambda: bench_accuracy(args, scratch)}
        for name in wanted:
            section(report, name, steps[name]())
    if args.json == "-":
        print(json.dumps(report, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

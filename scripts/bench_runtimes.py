"""A frozen base on TensorFlow (the local engine's compiled forward pass) against the same base converted to
ONNX Runtime, on in-memory pixels; and what starting each runtime costs.

    .venv/bin/python scripts/bench_runtimes.py [--weights-dir DIR] [--photos DIR] [--rounds 9]
        [--cases mobilenet_v2:160:avg:imagenet,vgg16:150:none:none] [--threads 2] [--startup]

For each case (backbone:size:pooling:weights) the base is built with its preprocessing as Keras layers, as
``exporting.build_model`` assembles it, and converted with ``converting.to_onnx``. TensorFlow runs
``TensorFlowRuntime.features`` (uint8 batch -> cast -> preprocess -> base, one traced graph); ONNX Runtime gets the
same uint8 batch as float32. Batches alternate between the runtimes (TF, ORT, TF, ORT, ...) after a warm-up;
medians of ``--rounds`` are reported as images per second and CPU milliseconds per image (process CPU time,
all threads: on a shared machine the steadier number). The feature difference is measured on the first 32
photos under ``--photos`` (random pixels without it). ``--startup`` times, in fresh processes, importing
TensorFlow against importing onnxruntime and opening the MobileNetV2 session (medians of 3, alternating).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import backbones, converting  # noqa: E402
from pipeline.engines.base import Job  # noqa: E402
from pipeline.runtimes.tensorflow import TensorFlowRuntime  # noqa: E402
from pipeline.assemble import assemble  # noqa: E402
from pipeline.images import load_image  # noqa: E402

BATCH = 32


def photos(root: str | None, size: int, n: int = BATCH) -> np.ndarray:
    """The first ``n`` readable photos under ``root`` (sorted), uint8 at ``size`` px; random pixels without one."""
    if not root:
        return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    loaded = (load_image(str(f), size)[0] for f in files)
    return np.stack([p for p in loaded if p is not None][:n])


def keras_base(spec, size: int, pooling: str, weights):
    """Preprocessing layers + frozen base: the model ``to_onnx`` converts."""
    return assemble(spec, size, pooling, weights, "backbone")[0]


def timed(fn, x) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn(x)
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_case(case: str, args, workdir: Path) -> dict:
    name, size, pooling, weights_spec = case.split(":")
    size = int(size)
    spec = backbones.get(name)
    weights = backbones.resolve_weights(spec, size, weights_spec, args.weights_dir)
    engine = TensorFlowRuntime(Job(spec, size, pooling, "backbone", "float32", weights, batch_size=BATCH))
    engine.build()
    start = time.perf_counter()
    path = converting.to_onnx(keras_base(spec, size, pooling, weights), workdir / f"{name}-{size}-{pooling}.onnx")
    convert_s = time.perf_counter() - start
    session = converting.onnx_session(path, threads=args.threads, input_shape=(size, size, 3))
    runtimes = {"tensorflow": engine.features,
                "onnxruntime": lambda x: converting.run_onnx(session, x.astype(np.float32))}

    real = photos(args.photos, size)
    tf_feats, ort_feats = engine.features(real), runtimes["onnxruntime"](real)
    batch = np.random.default_rng(1).integers(0, 256, (BATCH, size, size, 3), dtype=np.uint8)
    times = {k: [] for k in runtimes}
    for fn in runtimes.values():
        fn(batch)  # warm-up
    for _ in range(args.rounds):
        for key, fn in runtimes.items():
            times[key].append(timed(fn, batch))
    result = {"case": case, "convert_s": round(convert_s, 1), "onnx_mb": round(path.stat().st_size / 2**20, 1),
              "max_abs_diff": converting.max_abs_diff(tf_feats, ort_feats),
              "relative_diff": converting.relative_diff(tf_feats, ort_feats),
              "feature_max": float(np.abs(tf_feats).max())}
    for key, samples in times.items():
        result[f"{key}_img_s"] = round(BATCH / statistics.median(w for w, _ in samples), 1)
        result[f"{key}_cpu_ms_img"] = round(1000 * statistics.median(c for _, c in samples) / BATCH, 2)
    walls = [t[0] / o[0] for t, o in zip(times["tensorflow"], times["onnxruntime"])]
    result["ort_speedup_median_of_pairs"] = round(statistics.median(walls), 2)
    return result


STARTUP = {
    "import tensorflow": "import tensorflow",
    "import onnxruntime + open session": (
        "import sys; sys.path.insert(0, {root!r}); from pipeline import converting; "
        "converting.onnx_session({path!r}, threads=2)"),
}


def startup(onnx_path: Path, repeat: int = 3) -> dict:
    """Seconds to import each runtime (and open the session) in a fresh process; medians, alternating."""
    root = str(Path(__file__).resolve().parents[1])
    seconds = {k: [] for k in STARTUP}
    for _ in range(repeat):
        for key, code in STARTUP.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code.format(root=root, path=str(onnx_path))], check=True,
                           env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
            seconds[key].append(time.perf_counter() - start)
    base = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    python = time.perf_counter() - base
    return {k: round(statistics.median(v) - python, 2) for k, v in seconds.items()} | {"bare python": round(python, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir")
    parser.add_argument("--photos")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default="mobilenet_v2:160:avg:imagenet,mobilenet_v2:224:avg:imagenet,"
                                           "vgg16:150:none:none,efficientnetb0:224:avg:none")
    parser.add_argument("--startup", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            print(bench_case(case, args, Path(tmp)), f"load {os.getloadavg()[0]:.1f}", flush=True)
        if args.startup:
            print(startup(next(Path(tmp).glob("mobilenet_v2-224-*.onnx"))), flush=True)


if __name__ == "__main__":
    main()

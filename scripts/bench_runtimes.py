"""A frozen base on TensorFlow against the same base on ONNX Runtime, on in-memory pixels: the measurements
behind ``--runtime auto``'s table (``pipeline/runtimes/auto.py``), and what starting each runtime costs.

    .venv/bin/python scripts/bench_runtimes.py [--weights-dir DIR] [--photos DIR] [--rounds 9]
        [--cases mobilenet_v2:160:avg:imagenet,vgg16:150:none:none] [--startup]

For each case (backbone:size:pooling:weights) both runtimes run the job as ``extract`` would: TensorFlow
its traced graph (uint8 batch -> cast -> preprocessing -> base, padded to one compiled shape), ONNX Runtime
the model converted into a temporary model cache (``pipeline.runtimes.onnx_cache``: conversion time and
parity are reported). Batches of 32 alternate between the runtimes (TF, ORT, TF, ORT, ...) after a warm-up;
medians of ``--rounds`` are reported as images per second and CPU milliseconds per image (process CPU time,
all threads: on a shared machine the steadier number), and ``ort_speedup`` is the median of the per-round
ratios. Parity is measured on the first 16 photos under ``--photos`` (pseudo-random pixels without it).
``--startup`` times, in fresh processes, importing TensorFlow against importing onnxruntime and opening the
converted MobileNetV2 (medians of 3, alternating).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import backbones, runtimes  # noqa: E402
from pipeline.engines.base import FrozenBase  # noqa: E402
from pipeline.images import decode_all  # noqa: E402
from pipeline.runtimes import onnx_cache  # noqa: E402

BATCH = 32
DEFAULT_CASES = ("mobilenet_v2:160:avg:imagenet,mobilenet_v2:224:avg:imagenet,mobilenet:224:avg:none,"
                 "mobilenet_025:224:avg:none,efficientnetb0:224:avg:none,efficientnetb3:300:avg:none,"
                 "efficientnetv2_b0:224:avg:none,resnet50:224:avg:none,resnet50v2:224:avg:none,"
                 "inception_v3:299:avg:none,convnext_tiny:224:avg:none,vgg16:150:none:none,vgg16:224:avg:none,"
                 "vgg19:224:avg:none")


def photos(root: str | None, size: int):
    """``sample(n)``: the first ``n`` readable photos under ``root`` (sorted); None without a root."""
    if not root:
        return None
    files = sorted(str(p) for p in Path(root).rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    return lambda n: decode_all(files[:n], size)[0]


def timed(fn, x) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn(x)
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_case(case: str, args, workdir: Path) -> dict:
    name, size, pooling, weights_spec = case.split(":")
    size = int(size)
    spec = backbones.get(name)
    weights = backbones.resolve_weights(spec, size, weights_spec, args.weights_dir)
    job = FrozenBase(spec, size, pooling, "backbone", "float32", weights, BATCH, model_cache=str(workdir))
    start = time.perf_counter()
    try:
        path, _ = onnx_cache.ensure(job, photos(args.photos, size))
    except onnx_cache.ConversionRefused as exc:
        return {"case": case, "refused": str(exc)}
    convert_s = time.perf_counter() - start
    record = json.loads(onnx_cache.sidecar(path).read_text())
    engines = {"tensorflow": runtimes.create(job), "onnx": runtimes.create(replace(job, runtime="onnx"))}
    batch = np.random.default_rng(1).integers(0, 256, (BATCH, size, size, 3), dtype=np.uint8)
    for runtime in engines.values():
        runtime.features(batch)  # build and warm up
    times = {k: [] for k in engines}
    for _ in range(args.rounds):
        for key, runtime in engines.items():
            times[key].append(timed(runtime.features, batch))
    result = {"case": case, "convert_s": round(convert_s, 1), "onnx_mb": round(path.stat().st_size / 2**20, 1),
              "parity": record["parity"], "parity_pixels": record["parity_pixels"]}
    for key, samples in times.items():
        result[f"{key}_img_s"] = round(BATCH / statistics.median(w for w, _ in samples), 1)
        result[f"{key}_cpu_ms_img"] = round(1000 * statistics.median(c for _, c in samples) / BATCH, 2)
    ratios = [t[0] / o[0] for t, o in zip(times["tensorflow"], times["onnx"])]
    result["ort_speedup"] = round(statistics.median(ratios), 2)
    return result


STARTUP = {
    "import tensorflow": "import tensorflow",
    "import onnxruntime + open session": (
        "import sys; sys.path.insert(0, {root!r}); from pipeline.deploy import converting; "
        "converting.onnx_session({path!r})"),
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
    parser.add_argument("--cases", default=DEFAULT_CASES)
    parser.add_argument("--startup", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            print(bench_case(case, args, Path(tmp)), f"load {os.getloadavg()[0]:.1f}", flush=True)
        if args.startup:
            print(startup(next(Path(tmp).glob("mobilenet_v2-*.onnx"))), flush=True)


if __name__ == "__main__":
    main()

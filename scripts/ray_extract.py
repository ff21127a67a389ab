"""Stage one on Ray Data, and how it compares with the local engine on the same folder.

    python scripts/ray_extract.py DATA_DIR [--ray-address auto|ray://host:port] [--workers N] [--runtime auto]
        [--compare] [--startup]

Without ``--ray-address`` Ray starts on this machine; on a cluster, pass its address and put DATA_DIR,
the weights and ``--cache-dir`` on storage that every node mounts at the same path. With ``--compare``
the local engine also runs, into a second cache, and the report gives both throughputs, the largest
difference between their features, and the machine's load (other work skews the numbers). ``--startup``
only times an inference actor's start-up (a new worker process building its runtime), alternating
TensorFlow and ONNX Runtime (the converted model cached), three of each, medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace

import numpy as np

import pipeline


def run(engine: str, args: argparse.Namespace, cache_dir: str) -> dict:
    options = {"address": args.ray_address, "workers": args.workers} if engine == "ray" else {}
    return pipeline.extract(args.data_dir, backbone=args.backbone, image_size=args.image_size,
                            weights=args.weights, weights_dir=args.weights_dir, batch_size=args.batch_size,
                            cache_dir=cache_dir, engine=engine, engine_options=options, runtime=args.runtime)


def features(summary: dict) -> dict[str, np.ndarray]:
    with pipeline.FeatureFile(summary["cache"]) as f:
        return {(s, p): x for s in f.splits for p, x in zip(f.column(s, "paths"), f.features(s)[()])}


def line(engine: str, s: dict) -> str:
    t = s["timings"]
    return (f"{engine:>5}: {s['computed']} images, {s['images_per_second']:.1f} images/s over compute "
            f"{t['compute']:.1f} s; wall {s['seconds']:.1f} s (start-up {t['model']:.1f} s, hash {t['hash']:.1f} s, "
            f"commit {t['commit']:.1f} s)")


def actor_startup(args, cache_dir: str, repeat: int = 3) -> dict:
    """Median seconds from asking Ray for an inference actor to the actor having built its runtime."""
    import ray

    from pipeline import backbones, runtimes
    from pipeline.engines import FrozenBase
    from pipeline.engines.ray import _Infer

    spec = backbones.get(args.backbone)
    weights = backbones.resolve_weights(spec, args.image_size, args.weights, args.weights_dir)
    job = FrozenBase(spec, args.image_size, "avg", "backbone", "float32", weights, args.batch_size,
              model_cache=os.path.join(cache_dir, "models"))
    jobs = {name: runtimes.resolve(replace(job, runtime=name))[0] for name in ("tensorflow", "onnx")}
    ray.init(address=args.ray_address, include_dashboard=False) if args.ray_address else ray.init(num_cpus=2)
    actor = ray.remote(num_cpus=1)(_Infer)
    seconds: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeat):
        for name, resolved in jobs.items():
            start = time.perf_counter()
            handle = actor.remote(resolved, os.path.join(cache_dir, "parts"), "")
            ray.get(handle.__ray_ready__.remote())
            seconds[name].append(time.perf_counter() - start)
            ray.kill(handle)
    return {name: round(statistics.median(v), 2) for name, v in seconds.items()} | {"runs": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir")
    parser.add_argument("--ray-address", default=None)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--weights-dir", default=os.environ.get("TRANSFER_WEIGHTS_DIR"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cache-dir", default=None, help="default: a fresh temporary folder")
    parser.add_argument("--runtime", default="auto", help="auto, onnx or tensorflow")
    parser.add_argument("--compare", action="store_true", help="also run the local engine and compare")
    parser.add_argument("--startup", action="store_true", help="only time an inference actor's start-up")
    args = parser.parse_args()

    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="ray-extract-")
    load_before = os.getloadavg()
    if args.startup:
        print(f"actor start-up, seconds: {actor_startup(args, cache_dir)}; load average {load_before[0]:.2f} before, "
              f"{os.getloadavg()[0]:.2f} after")
        return
    report = {"ray": run("ray", args, os.path.join(cache_dir, "ray"))}
    print(line("ray", report["ray"]))
    if args.compare:
        report["local"] = run("local", args, os.path.join(cache_dir, "local"))
        print(line("local", report["local"]))
        ray_x, local_x = features(report["ray"]), features(report["local"])
        assert ray_x.keys() == local_x.keys(), "the engines produced different rows"
        diff = max(float(np.abs(ray_x[k] - local_x[k]).max()) for k in ray_x)
        ratio = report["ray"]["images_per_second"] / report["local"]["images_per_second"]
        print(f"ray / local throughput: {ratio:.2f}x; same {len(ray_x)} rows; max abs feature difference {diff:.2e}")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(json.dumps({k: {"images_per_second": v["images_per_second"], "timings": v["timings"]}
                      for k, v in report.items()}))


if __name__ == "__main__":
    main()

"""Stage one on Ray Data, and how it compares with the local engine on the same folder.

    python scripts/ray_extract.py DATA_DIR [--ray-address auto|ray://host:port] [--workers N] [--compare]

Without ``--ray-address`` Ray starts on this machine; on a cluster, pass its address and put DATA_DIR,
the weights and ``--cache-dir`` on storage that every node mounts at the same path. With ``--compare``
the local engine also runs, into a second cache, and the report gives both throughputs, the largest
difference between their features, and the machine's load (other work skews the numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np

import pipeline


def run(engine: str, args: argparse.Namespace, cache_dir: str) -> dict:
    options = {"address": args.ray_address, "workers": args.workers} if engine == "ray" else {}
    return pipeline.extract(args.data_dir, backbone=args.backbone, image_size=args.image_size,
                            weights=args.weights, weights_dir=args.weights_dir, batch_size=args.batch_size,
                            cache_dir=cache_dir, engine=engine, engine_options=options)


def features(summary: dict) -> dict[str, np.ndarray]:
    with pipeline.FeatureFile(summary["cache"]) as f:
        return {(s, p): x for s in f.splits for p, x in zip(f.column(s, "paths"), f.features(s)[()])}


def line(engine: str, s: dict) -> str:
    t = s["timings"]
    return (f"{engine:>5}: {s['computed']} images, {s['images_per_second']:.1f} images/s over compute "
            f"{t['compute']:.1f} s; wall {s['seconds']:.1f} s (start-up {t['model']:.1f} s, hash {t['hash']:.1f} s, "
            f"commit {t['commit']:.1f} s)")


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
    parser.add_argument("--compare", action="store_true", help="also run the local engine and compare")
    args = parser.parse_args()

    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="ray-extract-")
    load_before = os.getloadavg()
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

"""Input-pipeline alternatives for the local engine, timed against the engine itself.

    .venv/bin/python scripts/bench_levers.py DATA_DIR [--backbone mobilenet_v2 --image-size 160 --weights-dir DIR]
        [--intra 0 --inter 0] [--repeat 5] [--variants engine,map_1,...]

Each variant feeds the engine's own compiled forward pass (``TensorFlowRuntime.features``) and writes part files,
like ``LocalEngine.run``; only the input side changes:

  engine        ``LocalEngine.run`` as shipped (Pillow decode on a thread pool, two batches ahead)
  tf_data       the same Pillow decode as a tf.data ``numpy_function`` map, AUTOTUNE, prefetch 2 (the
                engine before it moved to a thread pool); the variants below change one thing of it
  map_1, map_2  decode with 1 or 2 parallel calls instead of AUTOTUNE
  prefetch_auto prefetch AUTOTUNE batches instead of 2
  private_pool  tf.data on a private pool of 2 threads (``Options.threading.private_threadpool_size``)
  data_intra_1  tf.data ops limited to one intra-op thread (``Options.threading.max_intra_op_parallelism``)
  tf_decode     TensorFlow's own JPEG decode and bilinear resize instead of Pillow (other pixels: speed only)
  bg_write      part files written on a background thread

Variants run interleaved, after one warm-up pass each; the median of ``--repeat`` passes is reported as
images per second and CPU milliseconds per image, with every pass's speed and the load average. On a shared
machine passes are bimodal (the same variant at 155 and 280 img/s when another process takes a core for a
while): compare CPU milliseconds, or the best passes, rather than single medians. ``--intra``/``--inter`` set
TensorFlow's thread pools (0 = its default) before anything runs: compare runs with different values.
"""

from __future__ import annotations

import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_extract import engine_for, job_parser, load  # noqa: E402  (same engine set-up and load report)


def pillow_dataset(tf, files: list[str], size: int, batch: int, parallel, prefetch, pool: int = 0, intra: int = 0):
    from pipeline.images import load_image

    def decode(i):
        pixels, _ = load_image(files[int(i)], size)
        return np.zeros((size, size, 3), np.uint8) if pixels is None else pixels

    def op(i):
        pixels = tf.numpy_function(decode, [i], tf.uint8, stateful=False)
        pixels.set_shape((size, size, 3))
        return pixels, i

    options = tf.data.Options()
    options.threading.private_threadpool_size = pool
    options.threading.max_intra_op_parallelism = intra
    ds = tf.data.Dataset.range(len(files)).map(op, num_parallel_calls=parallel).batch(batch).prefetch(prefetch)
    return ds.with_options(options)


def tf_dataset(tf, files: list[str], size: int, batch: int):
    paths = tf.constant(files)

    def op(i):
        image = tf.io.decode_image(tf.io.read_file(paths[i]), channels=3, expand_animations=False)
        return tf.cast(tf.image.resize(image, (size, size)), tf.uint8), i

    return tf.data.Dataset.range(len(files)).map(op, num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(2)


def consume(engine, dataset, parts, background: bool = False) -> None:
    """Forward pass and part files for every batch, as ``LocalEngine.run`` does."""
    writes: queue.Queue = queue.Queue(maxsize=4)

    def write_all() -> None:
        while (item := writes.get()) is not None:
            parts.write(*item)

    writer = threading.Thread(target=write_all)
    if background:
        writer.start()
    for pixels, idx in dataset:
        item = ([(str(i), 0) for i in idx.numpy()], engine.runtime.features(pixels))
        if background:
            writes.put(item)
        else:
            parts.write(*item)
    if background:
        writes.put(None)
        writer.join()


def main() -> None:
    parser = job_parser(__doc__, repeat=5)
    parser.add_argument("--intra", type=int, default=0, help="TensorFlow intra-op threads (0: default)")
    parser.add_argument("--inter", type=int, default=0, help="TensorFlow inter-op threads (0: default)")
    parser.add_argument("--variants", default="engine,tf_data,map_1,map_2,prefetch_auto,private_pool,data_intra_1,tf_decode,bg_write")
    args = parser.parse_args()

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.intra)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter)
    from pipeline import datasets
    from pipeline.store import Parts

    manifest = datasets.scan(args.data_dir)
    files = [str(manifest.root / e.path) for s in manifest.splits for e in manifest.split(s)]
    engine = engine_for(args, args.precision)
    engine.runtime.build()
    size, batch, auto = args.image_size, args.batch_size, tf.data.AUTOTUNE
    keys = [(str(i), 0) for i in range(len(files))]
    scratch = Path(tempfile.mkdtemp(prefix="bench_levers-"))

    def fresh_parts() -> Parts:
        return Parts(scratch / f"parts-{time.time_ns()}")

    variants = {
        "engine": lambda p: engine.run(files, keys, p),
        "tf_data": lambda p: consume(engine, pillow_dataset(tf, files, size, batch, auto, 2), p),
        "map_1": lambda p: consume(engine, pillow_dataset(tf, files, size, batch, 1, 2), p),
        "map_2": lambda p: consume(engine, pillow_dataset(tf, files, size, batch, 2, 2), p),
        "prefetch_auto": lambda p: consume(engine, pillow_dataset(tf, files, size, batch, auto, auto), p),
        "private_pool": lambda p: consume(engine, pillow_dataset(tf, files, size, batch, auto, 2, pool=2), p),
        "data_intra_1": lambda p: consume(engine, pillow_dataset(tf, files, size, batch, auto, 2, intra=1), p),
        "tf_decode": lambda p: consume(engine, tf_dataset(tf, files, size, batch), p),
        "bg_write": lambda p: consume(engine, pillow_dataset(tf, files, size, batch, auto, 2), p, background=True),
    }
    variants = {name: variants[name] for name in args.variants.split(",")}
    print(f"bench_levers: {manifest.root} ({len(files)} files), {args.backbone} {size} px, batch {batch}, "
          f"intra {args.intra} inter {args.inter}, median of {args.repeat}, load average {load()}", flush=True)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for rep in range(args.repeat + 1):  # the first pass warms up and is not counted
        for name, fn in variants.items():
            parts = fresh_parts()
            wall, cpu = time.perf_counter(), time.process_time()
            fn(parts)
            if rep:
                runs[name].append((time.perf_counter() - wall, time.process_time() - cpu))
            parts.clear()
    base = statistics.median(w for w, _ in runs["engine"])
    for name, r in runs.items():
        wall, cpu = statistics.median(w for w, _ in r), statistics.median(c for _, c in r)
        print(f"{name:14s} {len(files) / wall:7.1f} img/s  {1000 * cpu / len(files):5.2f} CPU-ms/img  "
              f"{base / wall:5.2f}x engine   passes: {' '.join(f'{len(files) / w:.0f}' for w, _ in r)} img/s", flush=True)
    print(f"load average {load()}")
    scratch.rmdir()


if __name__ == "__main__":
    main()

"""Stage one: scan -> plan (what is missing) -> engine -> commit.

Reuse is keyed by content: only images whose sha256 is not yet in the feature file (nor in part
files left by an interrupted run) are computed; when nothing is missing no runtime starts, and when the base
runs on ONNX from the model cache (``<cache_dir>/models``) TensorFlow is not imported. Photos the stat index
vouches for (see :mod:`pipeline.statindex`) keep their recorded sha256 without being read.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from . import _gc, backbones, datasets, engines, exact_copies, runtimes, statindex
from .augment import describe as describe_augment
from .config import MAX_BATCH, POOLINGS, PRECISIONS, PREPROCESSINGS, STORE_DTYPES, FeatureConfig
from .errors import PipelineError
from .images import decode_all, transient
from .store import FeatureCache, Row


def _choice(value: str, allowed: tuple, option: str) -> str:
    if value not in allowed:
        raise PipelineError(f"{option} {value!r} is not one of: {', '.join(allowed)}")
    return value


@_gc.paused()
def extract(data_dir: str | os.PathLike, backbone: str = "mobilenet_v2", image_size: int | None = None,
            pooling: str = "avg", weights: str = "imagenet", weights_dir: str | None = None,
            preprocess: str = "backbone", precision: str = "float32", store_dtype: str = "float32",
            batch_size: int = 32, cache_dir: str | os.PathLike = "cache", val_fraction: float = 0.0,
            test_fraction: float = 0.0, engine: str = "local", engine_options: dict | None = None,
            runtime: str = "auto", augment: int = 0, augment_policy: str = "default", seed: int = 0,
            follow_links: bool = False, rehash: bool = False,
            progress: Callable[[str, int], Callable[[int], None]] | None = None) -> dict:
    """Extract features of every image under ``data_dir`` into ``cache_dir/<dataset>/<config>.h5``.

    Returns the summary that ``transfer extract --json`` prints: ``cache``, ``splits``, ``computed``,
    ``reused``, ``removed``, ``skipped``, ``seconds``, ``timings``, ``images_per_second``, ``runtime`` (where
    the base ran; None when nothing was computed), ``hashed`` (photos whose bytes were read to hash them).

    A photo whose stat data are unchanged since the last run keeps its sha256 without being read (see
    :mod:`pipeline.statindex`); ``rehash`` reads every photo.

    ``runtime``: ``auto`` (see :mod:`pipeline.runtimes.auto`), ``onnx`` or ``tensorflow``. An ONNX base is
    converted once into ``cache_dir/models`` and checked against TensorFlow on the first images; a conversion
    that fails or disagrees falls back to TensorFlow with a note.

    ``augment=K`` also stores K views of every train image augmented by ``augment_policy`` (see
    :mod:`pipeline.augment`), rows with ``view`` 1..K, reproducible from ``seed``; val and test never are.
    ``engine_options`` are the chosen engine's own (``ray``: ``address``, ``workers``). Links to folders
    inside class folders are followed only with ``follow_links`` (see :func:`pipeline.datasets.scan`).

    Examples
    --------
    >>> summary = extract("data/urban_rural", backbone="mobilenet_v2", image_size=160)   # doctest: +SKIP
    >>> summary["splits"]                                                                 # doctest: +SKIP
    {'train': 72, 'val': 20}
    """
    started = time.perf_counter()
    spec = backbones.get(backbone)
    size = backbones.check_size(spec, image_size)
    _choice(pooling, POOLINGS, "--pooling")
    _choice(preprocess, PREPROCESSINGS, "--preprocess")
    _choice(precision, PRECISIONS, "--precision")
    _choice(store_dtype, STORE_DTYPES, "--store-dtype")
    if not 1 <= batch_size <= MAX_BATCH:
        raise PipelineError(f"--batch-size must be between 1 and {MAX_BATCH}")
    if augment < 0:
        raise PipelineError("--augment must be 0 or more (augmented views per train image)")
    views_key = describe_augment(augment_policy, seed) if augment else "none"
    if augment and views_key == "none":
        raise PipelineError("--augment K needs a policy: pass --augment-policy default or a list of steps")
    engine_options = engine_options or {}
    engines.check(engine, **engine_options)
    runtimes.check(runtime, precision)

    t = time.perf_counter()
    scanned_ns = time.time_ns()  # before the first stat: the stat index's reference for racy entries
    manifest = datasets.scan(data_dir, val_fraction, test_fraction, follow_links)
    resolved = backbones.resolve_weights(spec, size, weights, weights_dir)
    config = FeatureConfig(spec.name, resolved.spec, resolved.sha256, size, pooling, preprocess, precision,
                           store_dtype, views_key, augment, str(manifest.root.resolve()))
    path = Path(cache_dir) / manifest.root.resolve().name / config.file_name()
    index_file = statindex.location(path)
    notes = [resolved.note] if resolved.note else []

    with FeatureCache(path, config) as cache:
        hashing = statindex.hash_changed(manifest, index_file, cache.recorded(), rehash)
        manifest = hashing.manifest
        notes += hashing.notes
        timings = {"hash": time.perf_counter() - t, "convert": 0.0, "model": 0.0, "compute": 0.0, "commit": 0.0}

        label_of = {c: i for i, c in enumerate(manifest.classes)}
        views = {split: range(augment + 1 if split == "train" else 1) for split in manifest.splits}
        wanted = {split: [Row(e.path, label_of[e.label], e.sha256, v) for e in manifest.split(split)
                          for v in views[split]] for split in manifest.splits}
        first_path: dict = {}
        for rows in wanted.values():
            for r in rows:
                first_path.setdefault(r.key, r.path)

        stored = cache.stored()
        missing = cache.missing(first_path)
        failed = dict(cache.known_errors)  # sha256 -> reason
        computed, ran_on = 0, None
        if missing:
            job = engines.FrozenBase(spec, size, pooling, preprocess, precision, resolved, min(batch_size, len(missing)),
                              str(augment_policy if augment else "none"), seed, runtime,
                              model_cache=str(runtimes.model_cache(cache_dir)))
            split_of = {r.key: s for s, rows in wanted.items() for r in rows}
            missing.sort(key=lambda k: datasets.SPLITS.index(split_of[k]))  # one run, split after split
            files = [str(manifest.root / first_path[k]) for k in missing]
            with _gc.collecting():  # building and running the base
                t = time.perf_counter()
                job, runtime_notes = runtimes.resolve(job, lambda n: decode_all(files[:n], size)[0])
                timings["convert"], ran_on = time.perf_counter() - t, job.runtime
                notes += runtime_notes
                bars = _split_bars(progress, Counter(split_of[k] for k in missing))
                outcome = engines.create(engine, job, **engine_options).run(files, missing, cache.parts, bars)
            computed = outcome.computed
            failed.update({missing[i][0]: reason for i, reason in outcome.failed.items()})
            timings.update(outcome.timings)

        skipped = list(manifest.skipped)
        splits: dict[str, list[Row]] = {}
        for split, rows in wanted.items():
            splits[split] = [r for r in rows if r.sha256 not in failed]
            skipped += [{"path": r.path, "sha256": "" if transient(failed[r.sha256]) else r.sha256,  # retried if ""
                         "reason": failed[r.sha256]} for r in rows if r.sha256 in failed and r.view == 0]  # once a file
        kept = {r.key for rows in splits.values() for r in rows}
        removed = cache.removed(kept)
        reused = sum(1 for rows in splits.values() for r in rows if r.key in stored)

        t = time.perf_counter()
        cache.commit(manifest.classes, splits, skipped)
        timings["commit"] = time.perf_counter() - t
        notes += cache.notes
        notes += statindex.save(index_file, hashing, scanned_ns)

    compute_seconds = timings["compute"]
    return {
        "cache": str(path),
        "classes": manifest.classes,
        "splits": {s: len(r) for s, r in splits.items()},
        "computed": computed,
        "reused": reused,
        "removed": removed,
        "skipped": [{"path": s["path"], "reason": s["reason"]} for s in skipped],
        "warnings": manifest.warnings + exact_copies.duplicate_warnings(
            e for e in manifest.entries if e.sha256 not in failed),
        "notes": notes,
        "seconds": round(time.perf_counter() - started, 3),
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "images_per_second": round(computed / compute_seconds, 2) if compute_seconds else 0.0,
        "runtime": ran_on,
        "hashed": hashing.read,
    }


def _split_bars(progress: Callable[[str, int], Callable[[int], None]] | None,
                counts: dict[str, int]) -> Callable[[int], None]:
    """One progress callback over rows ordered split after split, moving each split's own bar."""
    if progress is None:
        return lambda n: None
    bars = [(progress(split, total), total) for split, total in counts.items()]
    position = [0, 0]  # current bar, rows done in it

    def update(n: int) -> None:
        while n and position[0] < len(bars):
            bar, total = bars[position[0]]
            step = min(n, total - position[1])
            bar(step)
            n -= step
            position[1] += step
            if position[1] == total:
                position[:] = [position[0] + 1, 0]

    return update

"""Stage one: manifest + config -> what is missing -> engine -> store.

Reuse is keyed by content: only images whose sha256 is not yet in the feature file (nor in part
files left by an interrupted run) are computed; when nothing is missing TensorFlow is not imported.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable

from . import backbones, datasets, store
from .augment import describe as describe_augment
from .engines import Job, check, create
from .errors import PipelineError

PRECISIONS = ("float32", "bfloat16")
STORE_DTYPES = ("float32", "float16")


def _version(package: str) -> str:
    for name in (package, f"{package}-cpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def cache_name(backbone: str, size: int, pooling: str, weights: backbones.Weights, preprocess: str,
               precision: str, store_dtype: str, augment: str = "none") -> str:
    """``<backbone>-<size>-<pooling>[-rescale][-bf16][-f16][-random|-w<sha8>][-aug<sha8>].h5``

    ``aug<sha8>`` hashes the augmentation policy and seed, not the number of views: adding views
    later reuses the same file and computes only the new ones.
    """
    parts = [backbone, str(size), pooling]
    parts += ["rescale"] if preprocess == "rescale" else []
    parts += ["bf16"] if precision == "bfloat16" else []
    parts += ["f16"] if store_dtype == "float16" else []
    if weights.spec == "none":
        parts.append("random")
    elif weights.spec != "imagenet":
        parts.append("w" + weights.sha256[:8])
    if augment != "none":
        parts.append("aug" + hashlib.sha256(augment.encode()).hexdigest()[:8])
    return "-".join(parts) + ".h5"


def _choice(value: str, allowed: tuple, option: str) -> str:
    if value not in allowed:
        raise PipelineError(f"{option} {value!r} is not one of: {', '.join(allowed)}")
    return value


def _open_previous(path: Path, config: dict) -> tuple[store.FeatureFile | None, bool, list[str]]:
    """The published file (if readable), whether its rows can be reused, and notes for the user."""
    if not path.exists():
        return None, False, []
    try:
        old = store.FeatureFile(path)
    except PipelineError as exc:
        return None, False, [f"ignoring unreadable {path.name} ({exc}); it will be rebuilt"]
    if store.fingerprint(old.config) != store.fingerprint(config):
        changed = [k for k in ("weights_sha256", "format_version") if old.config.get(k) != config.get(k)]
        return old, False, [f"{path.name} was made with different {', '.join(changed) or 'settings'}: recomputing all"]
    return old, True, []


def _unchanged(old: store.FeatureFile, classes: list[str], splits: dict[str, list[store.Row]],
               errors: list[dict]) -> bool:
    """Whether the published file already holds exactly these rows and errors."""
    if old.classes != classes or set(old.splits) != set(splits):
        return False
    if sorted((e["path"], e["reason"]) for e in old.errors()) != sorted((e["path"], e["reason"]) for e in errors):
        return False
    for split, rows in splits.items():
        stored = list(zip(old.column(split, "paths"), old.column(split, "labels").tolist(),
                          old.column(split, "sha256"), old.column(split, "view").tolist()))
        if stored != [(r.path, r.label, r.sha256, r.view) for r in rows]:
            return False
    return True


def extract(data_dir: str | os.PathLike, backbone: str = "mobilenet_v2", image_size: int | None = None,
            pooling: str = "avg", weights: str = "imagenet", weights_dir: str | None = None,
            preprocess: str = "backbone", precision: str = "float32", store_dtype: str = "float32",
            batch_size: int = 32, cache_dir: str | os.PathLike = "cache", val_fraction: float = 0.0,
            test_fraction: float = 0.0, engine: str = "local", ray_address: str | None = None,
            workers: int | None = None,
            augment: int = 0, augment_policy: str = "default", seed: int = 0,
            progress: Callable[[str, int], Callable[[int], None]] | None = None) -> dict:
    """Extract features of every image under ``data_dir`` into ``cache_dir/<dataset>/<config>.h5``.

    Returns the summary that ``transfer extract --json`` prints: ``cache``, ``splits``, ``computed``,
    ``reused``, ``removed``, ``skipped``, ``seconds``, ``timings``, ``images_per_second``.

    ``augment=K`` also stores K views of every train image augmented by ``augment_policy`` (see
    :mod:`pipeline.augment`), rows with ``view`` 1..K, reproducible from ``seed``; val and test never are.

    Examples
    --------
    >>> summary = extract("data/urban_rural", backbone="mobilenet_v2", image_size=160)   # doctest: +SKIP
    >>> summary["splits"]                                                                 # doctest: +SKIP
    {'train': 72, 'val': 20}
    """
    started = time.perf_counter()
    spec = backbones.get(backbone)
    size = backbones.check_size(spec, image_size)
    _choice(pooling, backbones.POOLINGS, "--pooling")
    _choice(preprocess, backbones.PREPROCESSINGS, "--preprocess")
    _choice(precision, PRECISIONS, "--precision")
    _choice(store_dtype, STORE_DTYPES, "--store-dtype")
    if batch_size < 1:
        raise PipelineError("--batch-size must be at least 1")
    if augment < 0:
        raise PipelineError("--augment must be 0 or more (augmented views per train image)")
    augment_key = describe_augment(augment_policy, seed) if augment else "none"
    if augment and augment_key == "none":
        raise PipelineError("--augment K needs a policy: pass --augment-policy default or a list of steps")
    if augment and engine != "local":
        raise PipelineError("--augment needs --engine local (the other engines do not augment views yet)")
    check(engine, ray_address, workers)

    t = time.perf_counter()
    manifest = datasets.hash_files(datasets.scan(data_dir, val_fraction, test_fraction))
    resolved = backbones.resolve_weights(spec, size, weights, weights_dir)
    hash_seconds = time.perf_counter() - t

    config = {
        "format_version": store.FORMAT_VERSION, "backbone": spec.name, "weights": resolved.spec,
        "weights_sha256": resolved.sha256, "input_size": size, "pooling": pooling, "preprocess": preprocess,
        "precision": precision, "store_dtype": store_dtype, "augment": augment_key, "augment_views": augment,
        "keras_version": _version("keras"), "tensorflow_version": _version("tensorflow"),
        "dataset_root": str(manifest.root.resolve()), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = Path(cache_dir) / manifest.root.resolve().name / cache_name(
        spec.name, size, pooling, resolved, preprocess, precision, store_dtype, augment_key)
    notes = [resolved.note] if resolved.note else []
    timings = {"hash": hash_seconds, "model": 0.0, "compute": 0.0, "commit": 0.0}

    with store.writer_lock(path):
        old, reusable, more_notes = _open_previous(path, config)
        notes += more_notes
        old_index = old.index() if reusable else {}
        known_errors = {e["sha256"]: e["reason"] for e in old.errors() if e["sha256"]} if reusable else {}
        parts = store.parts_for(path, config)
        parts_index = parts.index()
        label_of = {c: i for i, c in enumerate(manifest.classes)}
        views = {split: range(augment + 1 if split == "train" else 1) for split in manifest.splits}
        wanted = {split: [store.Row(e.path, label_of[e.label], e.sha256, v) for e in manifest.split(split)
                          for v in views[split]] for split in manifest.splits}
        first_path = {}
        for rows in wanted.values():
            for r in rows:
                first_path.setdefault(r.key, r.path)
        available = set(old_index) | set(parts_index)
        missing = [k for k in first_path if k not in available and k[0] not in known_errors]

        failed: dict[str, str] = {sha: reason for sha, reason in known_errors.items()}
        computed, compute_seconds = 0, 0.0
        if missing:
            job = Job(spec, size, pooling, preprocess, precision, resolved, batch_size,
                      str(augment_policy if augment else "none"), seed)
            runner = create(engine, job, ray_address, workers)
            split_of = {r.key: s for s, rows in wanted.items() for r in rows}
            missing.sort(key=lambda k: datasets.SPLITS.index(split_of[k]))  # one run, split after split
            files = [str(manifest.root / first_path[k]) for k in missing]
            counts = Counter(split_of[k] for k in missing)
            outcome = runner.run(files, missing, parts, _split_bars(progress, counts))
            computed, compute_seconds = outcome.computed, outcome.seconds
            failed.update({missing[i][0]: reason for i, reason in outcome.failed.items()})
            timings["model"] = getattr(runner, "build_seconds", 0.0)
            timings["compute"] = compute_seconds
            parts_index = parts.index()

        skipped = list(manifest.skipped)
        splits: dict[str, list[store.Row]] = {}
        for split, rows in wanted.items():
            splits[split] = [r for r in rows if r.sha256 not in failed]
            skipped += [{"path": r.path, "sha256": r.sha256, "reason": failed[r.sha256]}
                        for r in rows if r.sha256 in failed and r.view == 0]  # once per file, not per view
        new_keys = {r.key for rows in splits.values() for r in rows}
        removed = len({k for k in old_index if k not in new_keys})
        reused = sum(1 for rows in splits.values() for r in rows if r.key in available)

        t = time.perf_counter()
        if parts_index or not (reusable and _unchanged(old, manifest.classes, splits, skipped)):
            shape = _feature_shape(old, old_index, parts_index)
            store.commit(path, config, manifest.classes, splits, skipped, old, old_index, parts, parts_index, shape)
        elif old is not None:
            old.close()
        timings["commit"] = time.perf_counter() - t

    return {
        "cache": str(path),
        "classes": manifest.classes,
        "splits": {s: len(r) for s, r in splits.items()},
        "computed": computed,
        "reused": reused,
        "removed": removed,
        "skipped": [{"path": s["path"], "reason": s["reason"]} for s in skipped],
        "warnings": manifest.warnings + datasets.duplicate_warnings(e for e in manifest.entries if e.sha256 not in failed),
        "notes": notes,
        "seconds": round(time.perf_counter() - started, 3),
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "images_per_second": round(computed / compute_seconds, 2) if compute_seconds else 0.0,
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


def _feature_shape(old: store.FeatureFile | None, old_index: dict, parts_index: dict) -> tuple:
    """The shape of one row of features, from a part file or the previous file ((0,) when there is none)."""
    import h5py

    if not old_index and not parts_index:
        return (0,)
    if parts_index:
        part = next(iter(parts_index.values()))[0]
        with h5py.File(part, "r", locking=False) as f:
            return f["features"].shape[1:]
    split = next(iter(old_index.values()))[0]
    return old.features(split).shape[1:]

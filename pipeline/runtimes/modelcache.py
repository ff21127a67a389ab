"""The model cache: a frozen base converted to ONNX once, checked against TensorFlow, reused by later runs.

::

    <cache_dir>/models/<backbone>-<size>-<pooling>[-rescale]-<key8>.onnx   preprocessing + base + pooling,
                                                                           float32 pixels 0..255 in
    <cache_dir>/models/<same name>.json   its sidecar: the key, the file's sha256, the parity measured
                                          against TensorFlow and the tolerance (or why it was refused)
    <cache_dir>/models/<same name>.lock   one conversion at a time

The key is what decides the features: backbone, input size, pooling, preprocessing, the weights file's
sha256 (a fine-tuned run's base has its own), precision, and the ONNX opset. A model is used only when its
sidecar names that key, the file's sha256 matches the sidecar and the parity is within :data:`TOLERANCE`;
anything else is converted again. A refused conversion is recorded in the sidecar, so later runs go
straight to TensorFlow; deleting the sidecar tries again.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .. import converting
from ..atomic import write_text
from ..config import package_version, utc_now
from ..errors import PipelineError
from ..hashing import file_sha256
from ..onnx_encoder import is_encoder
from ..tolerances import TOLERANCES

TOLERANCE = TOLERANCES["onnx"]  # of the features' scale; float32 conversions measure 1e-7 to 6e-6
PARITY_IMAGES = 16  # images in the parity batch


class ConversionRefused(PipelineError):
    """The base could not be converted, or its ONNX model disagrees with TensorFlow."""


def key(job) -> dict:
    """Everything that decides what the converted model computes."""
    return {"backbone": job.backbone.name, "input_size": job.size, "pooling": job.pooling,
            "preprocess": job.preprocess, "weights_sha256": job.weights.sha256, "precision": job.precision,
            "opset": converting.ONNX_OPSET}


def model_path(job) -> Path:
    """Where the job's converted model lives in ``job.model_cache``."""
    digest = hashlib.sha256(json.dumps(key(job), sort_keys=True).encode()).hexdigest()
    parts = [job.backbone.name, str(job.size), job.pooling] + (["rescale"] if job.preprocess == "rescale" else [])
    return Path(job.model_cache) / f"{'-'.join(parts)}-{digest[:8]}.onnx"


def sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def parity(reference: np.ndarray, candidate: np.ndarray) -> float:
    """``max |reference - candidate|`` relative to the features' scale ``max |reference|`` (absolute when
    that is 0)."""
    scale = float(np.max(np.abs(reference))) if np.size(reference) else 0.0
    return converting.max_abs_diff(reference, candidate) / (scale or 1.0)


def ensure(job, sample: Callable[[int], np.ndarray] | None = None) -> tuple[Path, list[str]]:
    """The job's converted model, validated, converting it first when the cache has no usable one; and notes
    on what was rebuilt. ``sample(n)`` gives up to ``n`` real images for the parity check (uint8
    ``(n, size, size, 3)``); without it, or when it gives none, a fixed pseudo-random batch is used.

    Raises :class:`ConversionRefused` when the conversion fails or disagrees (now or recorded earlier).
    """
    path = model_path(job)
    if not _problem(path, key(job)):
        return path, []
    with _locked(path):
        problem = _problem(path, key(job))  # another process may have converted it while this one waited
        if not problem:
            return path, []
        _convert(job, path, _parity_pixels(job, sample))
    return path, [] if problem == MISSING else [f"rebuilt the converted model {path} ({problem})"]


MISSING = "not converted yet"


def ready(job) -> bool:
    """Whether the job's converted model is in its model cache and usable as it is (no conversion, so no
    weights file, needed)."""
    try:
        return not _problem(model_path(job), key(job))
    except ConversionRefused:
        return False


def _problem(path: Path, expected: dict) -> str:
    """Why the cached model cannot be used ('' when it can). A recorded refusal raises
    :class:`ConversionRefused` instead."""
    side = sidecar(path)
    if not side.exists() and not path.exists():
        return MISSING
    try:
        record = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return "its sidecar is missing or not readable JSON"
    if not isinstance(record, dict) or record.get("key") != expected:
        return "its sidecar names other settings"
    if "refused" in record:
        raise ConversionRefused(f"{record['refused']} (when converted {record.get('converted', '')}; delete {side} "
                                "to convert again)")
    if not path.is_file() or record.get("sha256") != _model_sha256(path):
        return "the model file does not match its sidecar's sha256"
    measured = record.get("parity")
    if not (isinstance(measured, float) and measured <= TOLERANCE):
        return f"its recorded parity {measured!r} is not within {TOLERANCE:g}"
    return ""


def _model_sha256(path: Path) -> str:
    """The model file's sha256, hashed once per version of the file in this process (a run checks its model
    when it picks the runtime and again when it opens it; a rewritten file has another size or mtime)."""
    stat = path.stat()
    return _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Wait for, then hold, the conversion lock of ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _parity_pixels(job, sample: Callable[[int], np.ndarray] | None) -> tuple[np.ndarray, str]:
    """Up to :data:`PARITY_IMAGES` of the job's own images, else a fixed pseudo-random batch; and which."""
    pixels = sample(PARITY_IMAGES)[:PARITY_IMAGES] if sample else np.zeros((0,))
    if len(pixels):
        return np.asarray(pixels), "photos"
    shape = (min(PARITY_IMAGES, job.batch_size), job.size, job.size, 3)
    return np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8), "random"


def _convert(job, path: Path, pixels: tuple[np.ndarray, str]) -> None:
    """Convert the job's base into ``path``, compare it with TensorFlow on ``pixels`` and write the sidecar;
    a failure or a disagreement is recorded in the sidecar and raised as :class:`ConversionRefused`.

    An encoder brought as an ONNX file is composed with its preprocessing and pooling instead, and compared
    with the user's file run as it is (:mod:`pipeline.onnx_encoder`)."""
    start = time.perf_counter()
    x, source = pixels[0].astype(np.float32), pixels[1]
    record = {"key": key(job), "converted": utc_now(), "parity_images": len(x), "parity_pixels": source,
              "tolerance": TOLERANCE, "versions": {p: package_version(p) for p in ("tensorflow", "tf2onnx",
                                                                                   "onnxruntime")}}
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.onnx")
    try:
        try:
            reference = (_compose_encoder if is_encoder(job.backbone) else _convert_keras)(job, x, tmp)
            candidate = converting.run_onnx(converting.onnx_session(tmp, input_shape=(job.size, job.size, 3)), x)
            measured = parity(reference, candidate)
        except OSError:
            raise
        except Exception as exc:  # tf2onnx and onnxruntime raise many types
            reason = (str(exc).strip().splitlines() or [""])[0][:200]
            kind = "" if isinstance(exc, PipelineError) else f"{type(exc).__name__}: "
            raise ConversionRefused(f"converting {job.backbone.name} to ONNX failed ({kind}{reason})") from None
        if not measured <= TOLERANCE:  # NaN fails too
            against = "the ONNX file run as it is" if is_encoder(job.backbone) else "TensorFlow"
            raise ConversionRefused(f"{job.backbone.name} converted to ONNX differs from {against} by {measured:.2g} "
                                    f"of the features' scale, above the tolerance {TOLERANCE:g}")
        record.update(sha256=file_sha256(tmp), parity=measured, seconds=round(time.perf_counter() - start, 2))
        os.replace(tmp, path)
    except ConversionRefused as exc:
        path.unlink(missing_ok=True)
        write_text(sidecar(path), json.dumps({**record, "refused": str(exc)}, indent=2))
        raise
    finally:
        tmp.unlink(missing_ok=True)
    write_text(sidecar(path), json.dumps(record, indent=2))


def _convert_keras(job, x: np.ndarray, tmp: Path) -> np.ndarray:
    """Convert the job's assembled Keras model into ``tmp``; TensorFlow's features of ``x``."""
    import tensorflow as tf

    from ..assemble import assemble

    model, _ = assemble(job.backbone, job.size, job.pooling, job.weights, job.preprocess, job.precision)
    forward = converting.trace(model)
    with ThreadPoolExecutor(1) as pool:  # TensorFlow's forward pass runs beside tf2onnx's Python
        reference = pool.submit(lambda: forward(tf.constant(x)).numpy())
        converting.to_onnx(model, tmp, forward=forward, optimize=False)
        return reference.result()


def _compose_encoder(job, x: np.ndarray, tmp: Path) -> np.ndarray:
    """Compose the job's ONNX encoder with its preprocessing and pooling into ``tmp``; the user's file's own
    features of ``x`` (checked for shape and finite values)."""
    from .. import onnx_encoder

    if job.preprocess != "backbone":
        raise PipelineError(f"--preprocess {job.preprocess} does not apply to an ONNX encoder: its JSON says how "
                            "to preprocess")
    reference, rank = onnx_encoder.reference(job.backbone, job.pooling, x)
    onnx_encoder.compose(job.backbone, job.pooling, rank, tmp)
    return reference

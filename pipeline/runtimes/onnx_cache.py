"""The model cache: a frozen base converted to ONNX once, checked against TensorFlow, reused by later runs.

::

    <cache_dir>/models/<backbone>-<size>-<pooling>[-rescale]-<key8>.onnx   preprocessing + base + pooling,
                                                                           float32 pixels 0..255 in
    <cache_dir>/models/<same name>.json   its sidecar: the key, the file's sha256, the parity measured
                                          against TensorFlow and the tolerance (or why it was refused)
    <cache_dir>/models/<same name>.lock   one conversion at a time

``$TRANSFER_MODEL_CACHE`` names one folder for every cache and run instead (:func:`pipeline.runtimes.model_cache`).
The key is what decides the features: backbone, input size, pooling, preprocessing, the weights file's
sha256 (a fine-tuned run's base has its own), precision, and the ONNX opset. A model is used only when its
sidecar names that key and the output shape, the file's sha256 matches the sidecar and the parity is within
:data:`TOLERANCE`; anything else is converted again. A refused conversion is recorded in the sidecar, so later
runs go straight to TensorFlow; deleting the sidecar tries again.

The sha256 detects corruption, not substitution: whoever can write the folder can write a matching sidecar.
So the sidecar is believed only when this user wrote it (:mod:`pipeline.runtimes.provenance`: the file, the
sidecar and the folder belong to this user or root and no one else can write them). A model of any other
provenance (a colleague's cache, a group-writable folder) is checked against TensorFlow on the job's images
before it is used, once per process, and refused (the run falls back to TensorFlow, saying how to reconvert)
when it disagrees; it never runs without TensorFlow and the weights file. Every model, trusted or not, must give
float32 features of the recorded shape, all finite, or the run stops (:func:`check_features`).

Only one process converts a model at a time; another one that needs it says within a second whom it waits for,
and gives up after :data:`LOCK_WAIT` seconds (or ``$TRANSFER_LOCK_WAIT``) with a one-line error.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..deploy import converting
from ..atomic import write_text
from ..config import package_version, utc_now
from ..errors import PipelineError
from ..hashing import file_sha256
from ..locks import holder, open_lock, stamp
from ..onnx_encoder import is_encoder
from ..parity import FEATURES as TOLERANCE, relative_diff
from .provenance import foreign_writer

PARITY_IMAGES = 16  # images in the parity batch
LOCK_WAIT = 900.0  # seconds a run waits for another process's conversion (MobileNetV2 converts in about 20);
# the environment variable TRANSFER_LOCK_WAIT sets another
LOCK_POLL = 0.2  # seconds between tries of a held conversion lock

log = logging.getLogger(__name__)


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


def ensure(job, sample: Callable[[int], np.ndarray] | None = None) -> tuple[Path, list[str]]:
    """The job's converted model, validated, converting it first when the cache has no usable one; and notes
    on what was rebuilt. ``sample(n)`` gives up to ``n`` real images for the parity check (uint8
    ``(n, size, size, 3)``); without it, or when it gives none, a fixed pseudo-random batch is used.

    Raises :class:`ConversionRefused` when the conversion fails or disagrees (now or recorded earlier).
    """
    path = model_path(job)
    if not _problem(path, key(job)):
        return path, _vouch(job, path, sample)
    with _locked(path):
        problem = _problem(path, key(job))  # another process may have converted it while this one waited
        if not problem:
            return path, _vouch(job, path, sample)
        _convert(job, path, _parity_pixels(job, sample))
    return path, [] if problem == MISSING else [f"rebuilt the converted model {path} ({problem})"]


MISSING = "not converted yet"


def ready(job) -> bool:
    """Whether the job's converted model is in its model cache, usable as it is and this user's own (no
    conversion or check against TensorFlow, so no weights file, needed)."""
    path = model_path(job)
    try:
        return not _problem(path, key(job)) and not foreign_writer(path, sidecar(path))
    except ConversionRefused:
        return False


def output_shape(job) -> tuple[int, ...]:
    """The features' shape per image that the job's converted model must give (recorded when it was converted)."""
    record = json.loads(sidecar(model_path(job)).read_text(encoding="utf-8"))
    return tuple(record["output_shape"])


def check_features(path: Path, features: np.ndarray, shape: tuple[int, ...]) -> None:
    """Refuse features of the model ``path`` that are not float32 of ``shape`` per image, or not all finite:
    such a model never writes a row of a feature file."""
    what = ""
    if features.dtype != np.float32 or features.shape[1:] != shape:
        what = f"{features.dtype} features of shape {features.shape[1:]}, not float32 {shape}"
    elif not np.isfinite(features).all():
        what = "features that are not finite numbers (NaN or infinity)"
    if what:
        raise PipelineError(f"the converted model {path} gives {what}; nothing was stored from it (delete it and "
                            f"{sidecar(path).name} to convert again)")


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
    if not ("refused" in record or _is_shape(record.get("output_shape"))):
        return "its sidecar records no output shape (an older version converted it)"
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


def _is_shape(value) -> bool:
    return isinstance(value, list) and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in value)


_vouched: set[tuple[str, str]] = set()  # (model file, sha256) checked against TensorFlow in this process


def _vouch(job, path: Path, sample: Callable[[int], np.ndarray] | None) -> list[str]:
    """Nothing when this user wrote the model (or it was checked already); else check it against TensorFlow on
    the job's images now and say so, or raise :class:`ConversionRefused` naming how to reconvert."""
    why = foreign_writer(path, sidecar(path))
    if not why or (str(path), _model_sha256(path)) in _vouched:
        return []
    advice = f"delete {path} and {sidecar(path).name} to convert it again, or pass a --cache-dir of your own"
    if job.weights.path is None and job.weights.spec != "none":
        raise ConversionRefused(f"the converted model {path} may not be this user's ({why}) and cannot be checked "
                                f"against TensorFlow without the weights file; {advice}")
    pixels, source = _parity_pixels(job, sample)
    try:
        reference = _reference(job, pixels.astype(np.float32))
        candidate = converting.run_onnx(converting.onnx_session(path, input_shape=(job.size, job.size, 3)),
                                        pixels.astype(np.float32))
        measured = relative_diff(reference, candidate) if candidate.shape == reference.shape else float("inf")
    except PipelineError as exc:
        raise ConversionRefused(f"the converted model {path} ({why}) cannot be checked: {exc}") from None
    if not measured <= TOLERANCE:  # NaN fails too
        raise ConversionRefused(f"the converted model {path} ({why}) differs from TensorFlow on {len(pixels)} "
                                f"{source} images (by {measured:.2g} of the features' scale, or in shape); {advice}")
    _vouched.add((str(path), _model_sha256(path)))
    return [f"checked the converted model {path} against TensorFlow ({why}): parity {measured:.2g}"]


def _reference(job, x: np.ndarray) -> np.ndarray:
    """TensorFlow's features of the float32 pixels ``x`` for the job."""
    import tensorflow as tf

    from ..assemble import assemble

    model, _ = assemble(job.backbone, job.size, job.pooling, job.weights, job.preprocess, job.precision)
    return converting.trace(model)(tf.constant(x)).numpy()


def _lock_wait() -> float:
    """Seconds to wait for a held conversion lock: ``$TRANSFER_LOCK_WAIT``, else :data:`LOCK_WAIT`."""
    text = os.environ.get("TRANSFER_LOCK_WAIT", "").strip()
    try:
        return float(text) if text else LOCK_WAIT
    except ValueError:
        raise PipelineError(f"TRANSFER_LOCK_WAIT={text!r} is not a number of seconds") from None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Wait for, then hold, the conversion lock of ``path``: a wait says whom it waits for at once and gives up
    after :data:`LOCK_WAIT` seconds with a :class:`PipelineError`."""
    lock_path, limit = path.with_suffix(".lock"), _lock_wait()
    fd = open_lock(lock_path)
    try:
        start, told = time.monotonic(), False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= limit:
                    raise PipelineError(f"gave up after waiting {waited:.0f} s for {holder(fd)} to convert {path.name} "
                                        f"(lock {lock_path}); rerun once it is done, or pass --runtime tensorflow") \
                        from None
                if not told:
                    log.warning(f"waiting for {holder(fd)}, which is converting {path.name} (lock {lock_path}); "
                                f"giving up after {limit:.0f} s")
                    told = True
                time.sleep(LOCK_POLL)
        stamp(fd)
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
    folder = Path(tempfile.mkdtemp(prefix=f".{path.stem}.tmp-", dir=path.parent))  # this process's alone
    tmp = folder / path.name
    try:
        try:
            reference = (_compose_encoder if is_encoder(job.backbone) else _convert_keras)(job, x, tmp)
            candidate = converting.run_onnx(converting.onnx_session(tmp, input_shape=(job.size, job.size, 3)), x)
            measured = relative_diff(reference, candidate)
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
        record.update(sha256=file_sha256(tmp), parity=measured, output_shape=list(reference.shape[1:]),
                      seconds=round(time.perf_counter() - start, 2))
        os.replace(tmp, path)
    except ConversionRefused as exc:
        path.unlink(missing_ok=True)
        write_text(sidecar(path), json.dumps({**record, "refused": str(exc)}, indent=2))
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
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

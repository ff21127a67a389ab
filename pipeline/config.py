"""The feature config: every setting that decides the features, its fingerprint, file name and attributes.

A feature file's root attributes are a :class:`FeatureConfig`; a run directory records the part named by
:data:`RUN_KEYS`; two configs whose :func:`fingerprint` differ never share rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from typing import Mapping

FORMAT_VERSION = 1
POOLINGS = ("avg", "max", "none")
PREPROCESSINGS = ("backbone", "rescale")
PRECISIONS = ("float32", "bfloat16")
STORE_DTYPES = ("float32", "float16")
RUNTIMES = ("onnx", "tensorflow")  # where a frozen base runs (pipeline.runtimes); not part of the cache key
RUNTIME_CHOICES = ("auto", *RUNTIMES)
IN_MEMORY_BYTES = 1 << 30  # heads train streaming when train's float32 features are larger (unless told)
MAX_BATCH = 1024  # images per forward pass (each batch is padded to one compiled shape)

# what changes the features: the cache key
FINGERPRINT_KEYS = ("backbone", "weights_sha256", "input_size", "pooling", "preprocess", "precision", "store_dtype",
                    "augment", "format_version")
# what a run directory records of its features
RUN_KEYS = ("backbone", "weights", "weights_sha256", "input_size", "pooling", "preprocess", "precision",
            "store_dtype", "augment", "format_version", "dataset_root")


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second (every ``created`` stamp)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def package_version(package: str) -> str:
    """The installed version of ``package`` (or its ``-cpu`` build), ``unknown`` when absent."""
    for name in (package, f"{package}-cpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def fingerprint(config: Mapping) -> str:
    """A short hash of everything in ``config`` (a feature file's attributes or a run's record) that
    changes the features."""
    blob = json.dumps({k: config.get(k) for k in FINGERPRINT_KEYS}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def differences(ours: Mapping, theirs: Mapping) -> list[str]:
    """``key ours vs theirs`` for each fingerprint key on which two configs differ."""
    return [f"{k} {ours.get(k)!r} vs {theirs.get(k)!r}" for k in FINGERPRINT_KEYS if ours.get(k) != theirs.get(k)]


@dataclass(frozen=True)
class FeatureConfig:
    """The settings of one feature file (its HDF5 root attributes)."""

    backbone: str
    weights: str  # 'imagenet', 'none' or a path
    weights_sha256: str
    input_size: int
    pooling: str = "avg"
    preprocess: str = "backbone"
    precision: str = "float32"
    store_dtype: str = "float32"
    augment: str = "none"  # canonical policy and seed of the augmented views (see pipeline.augment.describe)
    augment_views: int = 0
    dataset_root: str = ""
    keras_version: str = field(default_factory=lambda: package_version("keras"))
    tensorflow_version: str = field(default_factory=lambda: package_version("tensorflow"))
    created: str = field(default_factory=utc_now)
    format_version: int = FORMAT_VERSION

    def fingerprint(self) -> str:
        return fingerprint(self.attrs())

    def attrs(self) -> dict:
        """The HDF5 root attributes."""
        return asdict(self)

    def run_record(self) -> dict:
        """What a run directory records of these features."""
        return {k: getattr(self, k) for k in RUN_KEYS}

    def file_name(self) -> str:
        """``<backbone>-<size>-<pooling>[-rescale][-bf16][-f16][-random|-w<sha8>][-aug<sha8>].h5``

        ``aug<sha8>`` hashes the augmentation policy and seed, not the number of views: adding views
        later reuses the same file and computes only the new ones.
        """
        parts = [self.backbone, str(self.input_size), self.pooling]
        parts += ["rescale"] if self.preprocess == "rescale" else []
        parts += ["bf16"] if self.precision == "bfloat16" else []
        parts += ["f16"] if self.store_dtype == "float16" else []
        if self.weights == "none":
            parts.append("random")
        elif self.weights != "imagenet":
            parts.append("w" + self.weights_sha256[:8])
        if self.augment != "none":
            parts.append("aug" + hashlib.sha256(self.augment.encode()).hexdigest()[:8])
        return "-".join(parts) + ".h5"

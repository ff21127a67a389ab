"""How far apart two outputs of one model are (TensorFlow against ONNX Runtime, Keras against an export): the
metrics every parity check uses, and the tolerance of features.

Features are compared by :func:`relative_diff`, ``max |a - b|`` relative to their scale ``max |a|``, within
:data:`FEATURES` (measured 3e-7 to 6e-6 for float32 conversions); exported models' probabilities by
:func:`max_abs_diff` and :func:`top1_agreement`, within the table of :mod:`pipeline.deploy.tolerances`.

Examples
--------
>>> import numpy as np
>>> a = np.array([[90.0, 10.0], [20.0, 80.0]])
>>> round(relative_diff(a, a + 1), 4), top1_agreement(a, a[:, ::-1])
(0.0111, 0.0)
"""

from __future__ import annotations

import numpy as np

from .errors import PipelineError

FEATURES = 1e-4  # of the features' scale: a converted base beyond it is refused


def max_abs_diff(reference: np.ndarray, candidate: np.ndarray) -> float:
    """``max |reference - candidate|`` (shapes must match)."""
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape:
        raise PipelineError(f"outputs differ in shape: {reference.shape} vs {candidate.shape}")
    return float(np.max(np.abs(reference - candidate))) if reference.size else 0.0


def relative_diff(reference: np.ndarray, candidate: np.ndarray) -> float:
    """``max |reference - candidate|`` relative to the scale ``max |reference|`` (absolute when that is 0); NaN
    when either holds NaN, so ``not diff <= tolerance`` refuses it."""
    scale = float(np.max(np.abs(reference))) if np.size(reference) else 0.0
    return max_abs_diff(reference, candidate) / (scale or 1.0)


def top1_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Fraction of rows whose arg-max class is the same in both."""
    reference, candidate = np.asarray(reference), np.asarray(candidate)
    if reference.shape != candidate.shape:
        raise PipelineError(f"outputs differ in shape: {reference.shape} vs {candidate.shape}")
    return float(np.mean(reference.argmax(-1) == candidate.argmax(-1)))

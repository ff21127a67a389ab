"""transfer-pipeline: frozen ImageNet backbones -> cached features (HDF5) -> small classifiers.

Heavy modules load on first use, so ``import pipeline`` stays fast.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from . import _tf_quiet

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off stderr
_tf_quiet.install()  # and the lines it prints before that setting applies

__version__ = "0.1.0"

_EXPORTS = {
    "extract": ("pipeline.extraction", "extract"),
    "load": ("pipeline.store", "load"),
    "FeatureFile": ("pipeline.store", "FeatureFile"),
    "describe": ("pipeline.cache_info", "describe"),
    "PipelineError": ("pipeline.errors", "PipelineError"),
    "audit_cache": ("pipeline.audit", "audit_cache"),
    "apply_fixes": ("pipeline.audit.fixes", "apply_fixes"),
    "train": ("pipeline.training", "train"),
    "compare": ("pipeline.training", "compare"),
    "evaluate_run": ("pipeline.training", "evaluate_run"),
    "make_head": ("pipeline.heads", "make_head"),
    "predict": ("pipeline.prediction", "predict"),
    "export": ("pipeline.deploy.exporting", "export"),
    "write_report": ("pipeline.report", "write_report"),
    "preview": ("pipeline.previewing", "preview"),
    "finetune": ("pipeline.finetuning", "finetune"),
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    return getattr(importlib.import_module(module), attr)


__all__ = list(_EXPORTS)

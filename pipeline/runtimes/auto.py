"""``--runtime auto``: TensorFlow wherever it would see a GPU or the precision is bfloat16; otherwise the
runtime measured faster on CPU for the backbone.

:data:`FASTER_ON_CPU` comes from ``scripts/bench_runtimes.py`` (interleaved batches, medians;
docs/runtimes.md gives the run). A backbone missing from it runs on TensorFlow.
"""

from __future__ import annotations

import glob
import os
from importlib import metadata

MARGIN = 1.1  # ONNX only where it measured at least 10% faster: closer than that, the shared machine's noise decides
# backbone -> (runtime, ONNX Runtime's speed over TensorFlow's): medians of per-batch ratios, interleaved, float32,
# batch 32, 2 cores under load 2 to 7, at the default size (MobileNetV2: 160; 224 gave 1.64); two runs averaged
# where one was not clear. Backbones not listed (vgg19) run on TensorFlow, as the architecture they share.
FASTER_ON_CPU: dict[str, tuple[str, float]] = {
    "mobilenet": ("onnx", 1.35),
    "mobilenet_050": ("onnx", 1.35),  # not measured: mobilenet's architecture, as for _025
    "mobilenet_025": ("onnx", 1.49),
    "mobilenet_v2": ("onnx", 1.48),
    "efficientnetb0": ("onnx", 1.43),
    "efficientnetb3": ("onnx", 1.11),  # 1.05 and 1.17
    "efficientnetv2_b0": ("tensorflow", 1.06),  # 1.01 and 1.12
    "resnet50": ("tensorflow", 0.97),  # 0.94 and 1.00
    "resnet50v2": ("tensorflow", 1.01),
    "inception_v3": ("tensorflow", 1.03),  # 1.11 and 0.96
    "vgg16": ("tensorflow", 1.0),  # 0.94 and 1.06 (150 px, unpooled)
    "convnext_tiny": ("tensorflow", 0.0),  # does not convert: ONNX has no Erfc (its GELU)
}


def gpu_visible() -> bool:
    """Whether TensorFlow would see an NVIDIA GPU, decided without importing it: NVIDIA device files exist
    (``/dev/nvidia0``, ...), ``CUDA_VISIBLE_DEVICES`` does not hide them (empty or ``-1``), and the installed
    TensorFlow is the ``tensorflow`` distribution (``tensorflow-cpu``, what an x86_64 install gets, has no
    CUDA: see the ``gpu`` extra)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "0").strip() in ("", "-1"):
        return False
    if not glob.glob("/dev/nvidia[0-9]*"):
        return False
    try:
        metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        return False
    return True


def choose(backbone: str, precision: str) -> str:
    """The runtime ``auto`` picks for ``backbone`` at ``precision``."""
    if precision != "float32" or gpu_visible():
        return "tensorflow"
    return FASTER_ON_CPU.get(backbone, ("tensorflow", 1.0))[0]

"""TensorFlow's start-up chatter kept off stderr.

Importing TensorFlow prints lines through absl before any log level applies (``All log messages before
absl::InitializeLog()``, ``oneDNN custom operations are on``, CPU feature notes), even with
``TF_CPP_MIN_LOG_LEVEL=3``: in a batch script's log they look like problems. :func:`install` wraps the import
of ``tensorflow`` so that those known lines are dropped and anything else it prints still reaches stderr.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator

NOISE = re.compile(rb"absl::InitializeLog|oneDNN custom operations|cpu_feature_guard|"
                   rb"To enable the following instructions|rebuild TensorFlow with the appropriate compiler flags|"
                   rb"Unable to register cu(DNN|FFT|BLAS) factory|TF-TRT Warning|failed call to cuInit|"
                   rb"^fully_quantize: |Created TensorFlow Lite XNNPACK delegate")  # the TFLite converter, LiteRT


@contextmanager
def filtered_stderr() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file for the block, then pass on the lines that are not noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = b"".join(line for line in capture.read().splitlines(keepends=True) if not NOISE.search(line))
            if kept:
                os.write(2, kept)


class _QuietLoader(importlib.abc.Loader):
    """The real loader of ``tensorflow``, executing it inside :func:`filtered_stderr`."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        with filtered_stderr():
            self._loader.exec_module(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Quiet the import of TensorFlow in this process, unless the user asked for its logs
    (``TF_CPP_MIN_LOG_LEVEL=0``) or it is imported already."""
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        return
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())

"""The cyclic garbage collector paused while stage one does its bookkeeping.

A rerun over 100k photos builds a few hundred thousand small objects (entries, rows, keys, dicts of them) and no
reference cycles; with the collector on, its collections of ever larger generations took half of that time
(no-op rerun at 100k: hash_files 417 -> 147 ms, the rows to keep 321 -> 85 ms of CPU). Objects are still freed by
reference counting; the forward pass, which can make cycles (TensorFlow, Ray), runs with the collector on.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def switched(on: bool) -> Iterator[None]:
    """The collector on (``on``) or off for the block (a decorator too), back as it was after."""
    was = gc.isenabled()
    gc.enable() if on else gc.disable()
    try:
        yield
    finally:
        gc.enable() if was else gc.disable()


def paused():
    """The collector off for the block."""
    return switched(False)


def collecting():
    """The collector on for the block (inside :func:`paused`)."""
    return switched(True)

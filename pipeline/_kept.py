"""The last few expensive objects a process made (frozen bases, traced forward passes), handed out again by key.

What is kept is shared: callers read it and never change it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable, TypeVar

T = TypeVar("T")


class Kept:
    """The last ``size`` values :meth:`get` made, by key (least recently used let go first)."""

    def __init__(self, size: int):
        self.size = size
        self._values: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable | None, make: Callable[[], T]) -> T:
        """The value kept for ``key``, made by ``make()`` (and kept) when there is none; a key of None is never
        kept (``make()`` every time)."""
        if key is None:
            return make()
        with self._lock:
            if key not in self._values:
                self._values[key] = make()
                if len(self._values) > self.size:
                    self._values.popitem(last=False)
            self._values.move_to_end(key)
            return self._values[key]

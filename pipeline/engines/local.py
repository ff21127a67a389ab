"""The local engine: the stage-one loop (:mod:`pipeline.engines.loop`) in this process, decoding on a thread
pool a few batches ahead of the runtime's forward pass."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from . import loop
from .base import EngineOption, FrozenBase, Outcome

if TYPE_CHECKING:
    from ..store import Key, Parts

OPTIONS: tuple[EngineOption, ...] = ()


def check() -> None:
    """Nothing to check: the local engine needs nothing beyond the default install."""


class LocalEngine:
    """Runs a :class:`FrozenBase` in this process."""

    def __init__(self, job: FrozenBase):
        from .. import runtimes

        self.job = job
        self.runtime = runtimes.create(job)

    def run(self, files: list[str], keys: list[Key], parts: Parts,
            on_batch: Callable[[int], None] = lambda n: None) -> Outcome:
        """Compute features for ``files`` (absolute paths) and write them, keyed by ``keys``, to ``parts``."""
        self.runtime.build()
        outcome = loop.run(self.runtime, self.job, files, keys, parts, on_batch)
        outcome.timings = {"model": self.runtime.build_seconds, **outcome.timings}
        return outcome


ENGINE = LocalEngine

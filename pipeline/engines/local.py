"""The local engine: decoding on a thread pool a few batches ahead of the runtime's forward pass, in this
process; every finished batch is written as a part file."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from .base import EngineOption, Job, Outcome

if TYPE_CHECKING:
    from ..store import Key, Parts

OPTIONS: tuple[EngineOption, ...] = ()


def check() -> None:
    """Nothing to check: the local engine needs nothing beyond the default install."""


class LocalEngine:
    """Runs a :class:`Job` in this process."""

    def __init__(self, job: Job):
        from .. import runtimes

        self.job = job
        self.runtime = runtimes.create(job)

    def run(self, files: list[str], keys: list[Key], parts: Parts,
            on_batch: Callable[[int], None] = lambda n: None) -> Outcome:
        """Compute features for ``files`` (absolute paths) and write them, keyed by ``keys``, to ``parts``."""
        from ..augment import augment_view
        from ..images import decode_batches

        self.runtime.build()
        job = self.job
        timings = {"model": self.runtime.build_seconds, "decode": 0.0, "infer": 0.0, "write": 0.0}

        def view(i: int, pixels):  # view 0 is the image as decoded
            sha, k = keys[i]
            return augment_view(pixels, job.policy, sha, k, job.seed) if k > 0 else pixels

        failed: dict[int, str] = {}
        computed, start = 0, time.perf_counter()
        batches = decode_batches(files, job.size, job.batch_size, transform=view)
        while True:
            t0 = time.perf_counter()
            batch = next(batches, None)
            t1 = time.perf_counter()
            if batch is None:
                break
            good = [j for j, i in enumerate(batch.index) if i not in batch.reasons]
            feats = self.runtime.features(batch.pixels[good]) if good else None  # unreadable files skip the network
            t2 = time.perf_counter()
            failed.update(batch.reasons)
            if good:
                parts.write([keys[batch.index[j]] for j in good], feats, job.runtime)
            computed += len(good)
            timings["decode"] += t1 - t0
            timings["infer"] += t2 - t1
            timings["write"] += time.perf_counter() - t2
            on_batch(len(batch.index))
        timings["compute"] = time.perf_counter() - start
        return Outcome(computed, failed, timings)


ENGINE = LocalEngine

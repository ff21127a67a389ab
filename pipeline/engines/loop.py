"""The stage-one loop every engine runs: reader (decode, augmented views) -> mapper (the runtime) -> writer
(part files), timed per batch. An engine only decides where it runs: in this process, or in actors over
blocks of files."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from .base import FrozenBase, Outcome

if TYPE_CHECKING:
    from ..images import Batch
    from ..runtimes import Runtime
    from ..store import Key, Parts

BATCH_TIMINGS = ("decode", "infer", "write")  # seconds per batch, summed into Outcome.timings


def read(files: Sequence[str], keys: Sequence[Key], job: FrozenBase) -> Iterator[Batch]:
    """Batches of decoded images, each key's view: view 0 is the image as decoded, view k > 0 its k-th
    augmented version (seeded by sha256, k and ``job.seed``, so any process computes the same pixels)."""
    from ..augment import augment_view
    from ..images import decode_batches

    def view(i: int, pixels):
        sha, k = keys[i]
        return augment_view(pixels, job.policy, sha, k, job.seed) if k > 0 else pixels

    return decode_batches(files, job.size, job.batch_size, transform=view)


def run(runtime: Runtime, job: FrozenBase, files: Sequence[str], keys: Sequence[Key], parts: Parts,
        on_batch: Callable[[int], None] = lambda n: None) -> Outcome:
    """Compute features of ``files`` on a built ``runtime`` and write each batch, keyed by ``keys``, as a part
    file. Unreadable files skip the network and come back in ``Outcome.failed`` by their index in ``files``;
    ``Outcome.timings`` holds the :data:`BATCH_TIMINGS` sums and ``compute`` (the whole loop)."""
    failed: dict[int, str] = {}
    timings = dict.fromkeys(BATCH_TIMINGS, 0.0)
    computed, start = 0, time.perf_counter()
    batches = read(files, keys, job)
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        t1 = time.perf_counter()
        if batch is None:
            break
        good = [j for j, i in enumerate(batch.index) if i not in batch.reasons]
        features = runtime.features(batch.pixels[good]) if good else None
        t2 = time.perf_counter()
        failed.update(batch.reasons)
        if good:
            parts.write([keys[batch.index[j]] for j in good], features, job.runtime)
        computed += len(good)
        timings["decode"] += t1 - t0
        timings["infer"] += t2 - t1
        timings["write"] += time.perf_counter() - t2
        on_batch(len(batch.index))
    timings["compute"] = time.perf_counter() - start
    return Outcome(computed, failed, timings)

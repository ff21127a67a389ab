"""The Ray engine: stage one on a Ray cluster with Ray Data.

Decode and resize run as Ray Data tasks; inference runs in an actor pool whose actors build the
backbone once; each actor writes its finished batches as part files in ``parts.dir`` (a path every
node must reach: local disk on one machine, a shared filesystem on a cluster). The driver merges
them exactly as for the local engine. Ray restarts a killed actor and retries its batch.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import PipelineError
from .base import EngineOption, Job, Outcome

if TYPE_CHECKING:
    import numpy as np

    from ..store import Key, Parts

OPTIONS = (
    EngineOption("address", "--ray-address", str, "auto, ray://host:port, or host:port [default: start Ray here]."),
    EngineOption("workers", "--workers", int, "Inference actors for --engine ray [default: 1]."),
)
BATCHES_PER_BLOCK = 8  # one decode task per 8 batches
DECODE_CPUS = 0.5  # decode is short and partly waits on file reads (shared storage on a cluster)
INSTALL_HINT = "the ray engine needs Ray Data: pip install 'transfer-pipeline[ray]'"


def check(address: str | None = None, workers: int | None = None) -> None:
    """Refuse a worker count below 1; raise a one-line :class:`PipelineError` naming the extra to install
    when Ray Data is missing."""
    if workers is not None and workers < 1:
        raise PipelineError("--workers must be at least 1")
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise PipelineError(INSTALL_HINT) from None


def _connect(address: str | None) -> None:
    """Join the cluster at ``address`` (``auto``, ``ray://host:port``), or start Ray on this machine."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    try:
        ray.init(logging_level=logging.WARNING, **({"address": address} if address else {"include_dashboard": False}))
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise PipelineError(f"cannot reach a Ray cluster at {address or 'this machine'} ({exc}); "
                            "start one with `ray start --head` or `ray up`, or check --ray-address") from None


def _decode(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """A Ray Data task: decode and resize a batch of files; failures keep their row, with a reason."""
    import numpy as np

    from ..images import decode_batches

    paths = [str(p) for p in batch["path"]]
    (decoded,) = decode_batches(paths, size, batch=max(1, len(paths)))
    reasons = np.array([decoded.reasons.get(j, "") for j in range(len(paths))], dtype=object)
    return {"index": batch["index"], "sha256": batch["sha256"], "view": batch["view"], "pixels": decoded.pixels,
            "reason": reasons}


class _Infer:
    """An actor of the pool: builds the job's runtime once, then turns pixel batches into part files."""

    def __init__(self, job: Job, parts_dir: str, fingerprint: str):
        from .. import runtimes
        from ..store import Parts

        self.runtime = runtimes.create(job)  # the very same forward pass as the local engine
        self.runtime.build()
        self.job, self.parts = job, Parts(Path(parts_dir), fingerprint)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import numpy as np

        good = np.flatnonzero(batch["reason"] == "")
        for start in range(0, len(good), self.job.batch_size):
            rows = good[start:start + self.job.batch_size]
            features = self.runtime.features(batch["pixels"][rows])
            keys: list[Key] = [(str(batch["sha256"][i]), int(batch["view"][i])) for i in rows]
            self.parts.write(keys, features, self.job.runtime)
        return {"index": batch["index"], "reason": batch["reason"]}


class RayEngine:
    """Runs a :class:`Job` on Ray: ``workers`` inference actors fed by decode tasks."""

    def __init__(self, job: Job, address: str | None = None, workers: int = 1):
        check(address, workers)
        self.job, self.address, self.workers = job, address, workers

    def run(self, files: list[str], keys: list[Key], parts: Parts,
            on_batch: Callable[[int], None] = lambda n: None) -> Outcome:
        """Compute features for ``files`` (absolute paths, reachable from every node) into ``parts``."""
        import ray.data

        t = time.perf_counter()
        _connect(self.address)
        connect_seconds = time.perf_counter() - t
        ray.data.DataContext.get_current().enable_progress_bars = False
        start, batch = time.perf_counter(), self.job.batch_size
        items = [{"index": i, "path": f, "sha256": k[0], "view": k[1]} for i, (f, k) in enumerate(zip(files, keys))]
        # Blocks of several batches, so few batches are partial. Decode asks for other resources than the
        # actors, so Ray does not fuse it into them: it runs as separate tasks, overlapping actor start-up.
        # Ray Data restarts a killed actor and retries its batch; the pool grows to ``workers`` actors.
        blocks = max(1, math.ceil(len(items) / (batch * BATCHES_PER_BLOCK)))
        ds = (ray.data.from_items(items, override_num_blocks=blocks)
              .map_batches(_decode, fn_kwargs={"size": self.job.size}, batch_size=batch, num_cpus=DECODE_CPUS)
              .map_batches(_Infer, fn_constructor_kwargs={"job": self.job, "parts_dir": str(parts.dir),
                                                                     "fingerprint": parts.fingerprint},
                           batch_size=batch, compute=ray.data.ActorPoolStrategy(min_size=1, max_size=self.workers)))
        computed, reasons = 0, {}
        for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
            failed = out["reason"] != ""
            reasons.update({int(i): str(r) for i, r in zip(out["index"][failed], out["reason"][failed])})
            computed += int((~failed).sum())
            on_batch(len(out["index"]))
        return Outcome(computed, reasons, {"model": connect_seconds, "compute": time.perf_counter() - start})


ENGINE = RayEngine

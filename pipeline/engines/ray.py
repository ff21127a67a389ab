"""The Ray engine: stage one on a Ray cluster with Ray Data.

Ray Data splits the file list into blocks for an actor pool whose actors build the job's runtime once,
then run the stage-one loop (:mod:`pipeline.engines.loop`, the local engine's, augmented views included) over
their block: decoding on a thread pool a batch or two ahead of the forward pass. File paths travel between
processes rather than decoded pixels, ten times their size: with the base on ONNX Runtime, separate Ray Data
decode tasks ran at about half the local engine's images/s on one machine.
Each actor writes its finished batches as part files in ``parts.dir`` (a path every node must reach: local
disk on one machine, a shared filesystem on a cluster). The driver merges them exactly as for the local
engine, and sums the actors' per-batch timings. Ray restarts a killed actor and retries its block."""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import PipelineError
from . import loop
from .base import EngineOption, FrozenBase, Outcome

if TYPE_CHECKING:
    import numpy as np

    from ..store import Key, Parts

OPTIONS = (
    EngineOption("address", "--ray-address", str, "auto, ray://host:port, or host:port [default: start Ray here]."),
    EngineOption("workers", "--workers", int, "Inference actors for --engine ray [default: 1]."),
)
BATCHES_PER_BLOCK = 8  # files an actor is given at a time, in batches
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


class _Infer:
    """An actor of the pool: builds the job's runtime once, then turns blocks of files into part files."""

    def __init__(self, job: FrozenBase, parts_dir: str, fingerprint: str):
        from .. import runtimes
        from ..store import Parts

        self.runtime = runtimes.create(job)  # the very same forward pass as the local engine
        self.runtime.build()
        self.job, self.parts = job, Parts(Path(parts_dir), fingerprint)

    def __call__(self, block: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the stage-one loop over a block of files. Every row comes back with its failure reason (or
        "") and an equal share of the block's :data:`~pipeline.engines.loop.BATCH_TIMINGS`."""
        import numpy as np

        keys: list[Key] = [(str(s), int(v)) for s, v in zip(block["sha256"], block["view"])]
        outcome = loop.run(self.runtime, self.job, [str(p) for p in block["path"]], keys, self.parts)
        reasons = np.full(len(keys), "", dtype=object)
        for i, reason in outcome.failed.items():
            reasons[i] = reason
        shares = {name: np.full(len(keys), outcome.timings[name] / len(keys)) for name in loop.BATCH_TIMINGS}
        return {"index": block["index"], "reason": reasons, **shares}


class RayEngine:
    """Runs a :class:`FrozenBase` on Ray: up to ``workers`` actors, each decoding and computing blocks of files."""

    def __init__(self, job: FrozenBase, address: str | None = None, workers: int = 1):
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
        # Blocks of several batches, so few batches are partial and decoding runs ahead within a block.
        # Ray Data restarts a killed actor and retries its block; the pool grows to ``workers`` actors.
        size = batch * BATCHES_PER_BLOCK
        ds = (ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / size)))
              .map_batches(_Infer, fn_constructor_kwargs={"job": self.job, "parts_dir": str(parts.dir),
                                                          "fingerprint": parts.fingerprint},
                           batch_size=size, compute=ray.data.ActorPoolStrategy(min_size=1, max_size=self.workers)))
        computed, reasons = 0, {}
        timings = dict.fromkeys(loop.BATCH_TIMINGS, 0.0)  # summed over actors: may exceed compute
        for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
            failed = out["reason"] != ""
            reasons.update({int(i): str(r) for i, r in zip(out["index"][failed], out["reason"][failed])})
            computed += int((~failed).sum())
            for name in timings:
                timings[name] += float(out[name].sum())
            on_batch(len(out["index"]))
        return Outcome(computed, reasons, {"model": connect_seconds, **timings, "compute": time.perf_counter() - start})


ENGINE = RayEngine

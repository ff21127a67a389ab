"""One split's photos as fine-tuning reads them: decoded once and held, or decoded again on every pass.

Held (uint8) when the split's pixels fit in :data:`~pipeline.config.IN_MEMORY_BYTES`, as stage two holds
features; above it each pass decodes batch by batch, so memory stays flat in the number of photos.
Unreadable files are dropped and named in :attr:`Photos.reasons`.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from .images import decode_all, decode_batches

DECODE_ROWS = 256  # photos decoded per chunk of a streamed pass


class Photos:
    """The photos ``paths`` (relative to ``root``) with class indices ``labels``, decoded at ``size`` as stage
    one decodes them; ``held``: decoded now and kept."""

    def __init__(self, root: Path, paths: list[str], labels: np.ndarray, size: int, held: bool):
        self.root, self.paths, self.labels, self.size = root, list(paths), np.asarray(labels), size
        self.reasons: dict[str, str] = {}
        self.held: tuple[np.ndarray, np.ndarray, list[str]] | None = None
        if held:
            pixels, kept, reasons = decode_all(self._files(range(len(self.paths))), size)
            self.reasons = {self.paths[i]: reason for i, reason in sorted(reasons.items())}
            self.held = pixels, self.labels[kept], [self.paths[i] for i in kept]

    def __len__(self) -> int:
        return len(self.paths)

    def _files(self, order) -> list[str]:
        return [str(self.root / self.paths[i]) for i in order]

    def chunks(self, rng: np.random.Generator | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
        """``(pixels, labels, paths)`` of the readable photos, in order or (given ``rng``) shuffled."""
        if self.held is not None:
            pixels, labels, paths = self.held
            order = rng.permutation(len(labels)) if rng is not None else slice(None)
            yield pixels[order], labels[order], list(np.asarray(paths, dtype=object)[order])
            return
        order = rng.permutation(len(self.paths)) if rng is not None else np.arange(len(self.paths))
        for batch in decode_batches(self._files(order), self.size, DECODE_ROWS):
            good = [j for j, i in enumerate(batch.index) if i not in batch.reasons]
            self.reasons.update({self.paths[order[i]]: r for i, r in batch.reasons.items()})
            rows = order[[batch.index[j] for j in good]]
            yield batch.pixels[good], self.labels[rows], [self.paths[i] for i in rows]

    def keras(self, batch_size: int, rng: np.random.Generator | None = None) -> dict:
        """``model.fit`` / ``evaluate`` arguments: the held arrays, or a ``tf.data`` pass decoding as it goes
        (shuffled anew each pass given ``rng``)."""
        if self.held is not None:
            return {"x": self.held[0], "y": self.held[1], "batch_size": batch_size}
        import tensorflow as tf

        def pairs():
            for pixels, labels, _ in self.chunks(rng):
                yield pixels, labels

        spec = (tf.TensorSpec((None, self.size, self.size, 3), tf.uint8), tf.TensorSpec((None,), self.labels.dtype))
        return {"x": tf.data.Dataset.from_generator(pairs, output_signature=spec).rebatch(batch_size).prefetch(2)}

    def validation(self, batch_size: int):
        """What ``model.fit`` takes as ``validation_data``: ``(pixels, labels)`` held, or a ``tf.data`` pass."""
        data = self.keras(batch_size)
        return (data["x"], data["y"]) if self.held is not None else data["x"]

    def skipped(self) -> list[dict]:
        """``[{path, reason}]`` of the photos found unreadable so far."""
        return [{"path": p, "reason": r} for p, r in sorted(self.reasons.items())]


@contextlib.contextmanager
def passes_end_quietly():
    """Keras warns "Your input ran out of data; interrupting training" when a pass it did not know the length of
    ends, as a streamed pass does (its unreadable photos are found as it goes, so its batches are not counted
    ahead): nothing was cut short, and the warning is left out."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Your input ran out of data", UserWarning)
        yield

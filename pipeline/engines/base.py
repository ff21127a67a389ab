"""What every engine is given and gives back, and how an engine declares its own options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol

from ..backbones import Backbone, Weights

if TYPE_CHECKING:
    from ..store import Key, Parts


@dataclass(frozen=True)
class FrozenBase:
    """The frozen base an engine runs over every file: backbone, size, pooling, preprocessing, precision and
    weights, with the batch, augmentation and runtime settings of the run."""

    backbone: Backbone
    size: int
    pooling: str
    preprocess: str
    precision: str
    weights: Weights
    batch_size: int = 32
    policy: str = "none"  # augmentation policy of views > 0 (see pipeline.augment)
    seed: int = 0
    runtime: str = "tensorflow"  # where the frozen base runs (see pipeline.runtimes)
    model_cache: str = "cache/models"  # the folder of converted bases, reachable from every worker


@dataclass
class Outcome:
    """What a run did: images computed, failures by file index (with reasons), and seconds spent:
    ``model`` (set-up), ``compute`` (the whole run), and within it ``decode`` (waiting for decoded
    images), ``infer`` and ``write`` (part files)."""

    computed: int
    failed: dict[int, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineOption:
    """An option only one engine takes: its keyword, its command-line flag, type and help."""

    name: str
    flag: str
    type: type
    help: str


class Engine(Protocol):
    """Computes features of files into part files: ``Engine(job, **options).run(...)``."""

    def run(self, files: list[str], keys: list[Key], parts: Parts,
            on_batch: Callable[[int], None] = lambda n: None) -> Outcome: ...

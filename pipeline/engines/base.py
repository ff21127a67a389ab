"""What every engine is given and gives back."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..backbones import Backbone, Weights


@dataclass(frozen=True)
class Job:
    """The network side of an extraction: the same for every file."""

    backbone: Backbone
    size: int
    pooling: str
    preprocess: str
    precision: str
    weights: Weights
    batch_size: int = 32
    augment: str = "none"  # canonical policy for views > 0 (see pipeline.augment)
    seed: int = 0


@dataclass
class Outcome:
    """What a run did: images computed, failures by file index (with reasons), compute seconds."""

    computed: int
    failed: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0

"""Augmentation policies built from Keras preprocessing layers, applied reproducibly per image view.

A policy is a comma-separated list of steps, applied in order, each ``name`` or ``name=value``::

    flip                      RandomFlip: horizontal (or flip=vertical, flip=both)
    rotate=0.1                RandomRotation: up to +-10% of a full turn
    zoom=0.2                  RandomZoom: zoom in or out by up to 20%, aspect kept
    brightness=0.2            RandomBrightness: add up to +-20% of the 0..255 range
    contrast=0.2              RandomContrast: scale contrast by a factor in [0.8, 1.2]
    hue=0.1                   RandomHue: rotate hue by up to +-5% of the colour circle (half the factor)
    shift=0.1                 RandomTranslation: move up to +-10% of the height and of the width

``default`` stands for ``flip,rotate=0.1,zoom=0.2`` (the Keras transfer-learning guide's policy) and
can be extended: ``default,brightness=0.2``. ``none`` (or an empty string) means no augmentation.

The ``view``-th augmented version of an image depends only on the pixels, the policy, the image's
sha256, ``view`` and a user seed, so a rerun (or another machine) reproduces it exactly.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import PipelineError

DEFAULT = "flip,rotate=0.1,zoom=0.2"
FLIP_MODES = {"horizontal": "horizontal", "vertical": "vertical", "both": "horizontal_and_vertical"}
# step name -> its value when given without one
STEPS: dict[str, float | str] = {"flip": "horizontal", "rotate": 0.1, "zoom": 0.2, "brightness": 0.2,
                                 "contrast": 0.2, "hue": 0.1, "shift": 0.1}
HELP = ("a comma-separated list of " + ", ".join(f"{k}[={v}]" for k, v in STEPS.items())
        + ", or default, or none; e.g. 'flip,rotate=0.1,zoom=0.2,brightness=0.2'")


@dataclass(frozen=True)
class Policy:
    """An ordered tuple of ``(step, value)``; ``str(policy)`` is its canonical text (part of the cache key)."""

    steps: tuple[tuple[str, float | str], ...]

    def __str__(self) -> str:
        return ",".join(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                        for name, value in self.steps) or "none"

    def __bool__(self) -> bool:
        return bool(self.steps)


def _step(item: str) -> tuple[str, float | str]:
    name, _, text = (part.strip() for part in item.partition("="))
    name = name.lower()
    if name not in STEPS:
        close = difflib.get_close_matches(name, list(STEPS) + ["default"], n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise PipelineError(f"unknown augmentation {name!r}.{hint} Use {HELP}")
    if name == "flip":
        mode = text.lower() or "horizontal"
        if mode not in FLIP_MODES:
            raise PipelineError(f"flip={text!r}: choose flip=horizontal, flip=vertical or flip=both")
        return name, mode
    if not text:
        return name, float(STEPS[name])
    try:
        value = float(text)
    except ValueError:
        raise PipelineError(f"{item!r}: {name} takes a number, e.g. {name}={STEPS[name]}") from None
    if not 0 < value <= (0.99 if name in ("zoom", "shift") else 1.0):
        upper = "below 1" if name in ("zoom", "shift") else "at most 1"
        raise PipelineError(f"{item!r}: {name} must be above 0 and {upper}, e.g. {name}={STEPS[name]}")
    return name, value


def parse(text: str | Policy | None) -> Policy:
    """Parse a policy string (``"default"``, ``"none"``, ``"flip,rotate=0.1,zoom=0.2,brightness=0.5"``).

    Examples
    --------
    >>> str(parse("default,brightness"))
    'flip=horizontal,rotate=0.1,zoom=0.2,brightness=0.2'
    """
    if isinstance(text, Policy):
        return text
    text = (text or "none").strip()
    if text.lower() == "none":
        return Policy(())
    items = [i.strip() for i in text.split(",") if i.strip()]
    expanded = [s for i in items for s in (DEFAULT.split(",") if i.lower() == "default" else [i])]
    steps = tuple(_step(i) for i in expanded)
    names = [n for n, _ in steps]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise PipelineError(f"augmentation policy {text!r} names {', '.join(repeated)} twice; give each step once")
    return Policy(steps)


def _layer(name: str, value: float | str):
    import keras

    L = keras.layers
    return {
        "flip": lambda v: L.RandomFlip(FLIP_MODES[v]),
        "rotate": lambda v: L.RandomRotation(v),
        "zoom": lambda v: L.RandomZoom(v),
        "brightness": lambda v: L.RandomBrightness(v, value_range=(0, 255)),
        "contrast": lambda v: L.RandomContrast(v, value_range=(0, 255)),
        "hue": lambda v: L.RandomHue(v, value_range=(0, 255)),
        "shift": lambda v: L.RandomTranslation(v, v),
    }[name](value)


def layers(policy: str | Policy) -> list:
    """The Keras preprocessing layers of a policy, in order (for a model or a ``keras.Sequential``)."""
    return [_layer(name, value) for name, value in parse(policy).steps]


@lru_cache(maxsize=8)
def _cached_layers(policy: str) -> tuple:
    return tuple(layers(policy))


def view_seed(sha256: str, view: int, seed: int) -> int:
    """The random seed of one augmented view: a 31-bit number from (sha256, view, seed)."""
    digest = hashlib.sha256(f"{sha256}:{view}:{seed}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def augment_view(pixels: np.ndarray, policy: str | Policy, sha256: str, view: int, seed: int = 0) -> np.ndarray:
    """The ``view``-th augmented version of ``pixels`` ((H, W, 3) uint8), reproducible from its arguments.

    Each step draws from one :class:`keras.random.SeedGenerator` seeded by :func:`view_seed`, so no
    state is shared between calls (safe from parallel decode threads).
    """
    import keras

    steps = _cached_layers(str(parse(policy)))
    generator = keras.random.SeedGenerator(view_seed(sha256, view, seed))
    x = keras.ops.convert_to_tensor(pixels[None].astype(np.float32))
    for layer in steps:
        transformation = layer.get_random_transformation(x, training=True, seed=generator)
        x = layer.transform_images(x, transformation, training=True)
    return np.clip(np.rint(keras.ops.convert_to_numpy(x)[0]), 0, 255).astype(np.uint8)


def describe(policy: str | Policy, seed: int) -> str:
    """The ``augment`` attribute of a feature file: canonical policy and seed (``none`` without a policy)."""
    policy = parse(policy)
    return f"{policy};seed={seed}" if policy else "none"

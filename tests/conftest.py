"""Shared fixtures: small synthetic image folders, and the real data and weights in ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"
SHARED_WEIGHTS = SHARED / "weights"

needs_shared = pytest.mark.skipif(
    not (SHARED_DATA.is_dir() and SHARED_WEIGHTS.is_dir()),
    reason=f"real photos and ImageNet weights expected in {SHARED} (absent on this machine)",
)

COLORS = {"blue": (40, 60, 200), "red": (200, 50, 40)}


def make_image(path: Path, color: tuple[int, int, int], seed: int, size: tuple[int, int] = (48, 40),
               fmt: str | None = None) -> Path:
    """A noisy solid-colour picture, different for every seed."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(color) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def make_folder(root: Path, counts: dict[str, int], classes=COLORS, ext: str = "png", seed: int = 0) -> Path:
    """``root/<split>/<class>/<i>.<ext>`` for each split in ``counts`` (a split named '' means no split level)."""
    n = seed
    for split, count in counts.items():
        for label, color in classes.items():
            for i in range(count):
                n += 1
                make_image(root / split / label / f"{label}{i}.{ext}", color, n)
    return root


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """train 6+6, val 3+3, test 2+2 PNGs."""
    return make_folder(tmp_path / "tiny", {"train": 6, "val": 3, "test": 2})


@pytest.fixture
def fast_args(tmp_path: Path) -> dict:
    """Extraction settings that run in a second: VGG16 with (seeded) random weights at 32 px.

    VGG16 keeps random-init features around 0.1, so value comparisons can fail; random-init
    MobileNets shrink them to about 1e-17."""
    return dict(backbone="vgg16", image_size=32, weights="none", batch_size=8,
                cache_dir=str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _quiet_tf(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

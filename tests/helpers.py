"""Test helpers, imported as a module (``from helpers import make_folder``): synthetic image folders, where the
real photos and weights live, and copying what a session fixture built before a test changes it.

The fixtures themselves are declared in ``conftest.py``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"
SHARED_WEIGHTS = SHARED / "weights"
SHARED_MISSING = f"real photos and ImageNet weights expected in {SHARED} (absent on this machine)"

# The one way to say a test needs ../shared: conftest skips tests marked `real`, saying why, when it is absent.
needs_shared = pytest.mark.real

COLORS = {"blue": (40, 60, 200), "red": (200, 50, 40)}
TINY_COUNTS = {"train": 6, "val": 3, "test": 2}  # the `tiny_data` folder: 22 pictures
FAST_ARGS = dict(backbone="vgg16", image_size=32, weights="none", batch_size=8)  # seconds, see `fast_args`
DENSE_FAST = {"units": "8", "epochs": 5}  # a dense head that trains in a second


def shared_present() -> bool:
    """Whether ../shared holds the real photos and weights."""
    return SHARED_DATA.is_dir() and SHARED_WEIGHTS.is_dir()


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


def vgg16_weights(path: Path, size: int = 32) -> Path:
    """A fixed VGG16 weights file, so that features can be recomputed (unlike --weights none) by predict and
    export; random-init VGG16 features are about 0.1, not vanishing like a random MobileNet's."""
    import keras

    keras.utils.set_random_seed(0)
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(size, size, 3),
                             pooling="avg").save_weights(path)
    return path


def copied(src: str | Path, dst: Path) -> Path:
    """A copy of a file or folder a session fixture built, for a test that changes it."""
    src = Path(src)
    return Path(shutil.copytree(src, dst) if src.is_dir() else shutil.copy(src, dst))


class SharedExtracts:
    """Each ../shared dataset extracted once per session and settings, into one cache folder whose model cache
    converts each base once; calling it again returns the summary of that first extraction. A test that
    changes a feature file, or extracts a folder of its own, starts from a copy (:meth:`seed`)."""

    def __init__(self, root: Path):
        self.cache_dir = root / "cache"
        self._done: dict = {}

    def __call__(self, dataset: str, **settings) -> dict:
        key = (dataset, tuple(sorted(settings.items())))
        if key not in self._done:
            from pipeline import extract

            self._done[key] = extract(SHARED_DATA / dataset, weights_dir=str(SHARED_WEIGHTS),
                                      cache_dir=str(self.cache_dir), **settings)
        return self._done[key]

    def seed(self, cache_dir: Path, *summaries: dict) -> Path:
        """``cache_dir`` holding copies of the converted models and of the feature files of ``summaries``
        (reused by content when a folder of the same name is extracted there)."""
        if (self.cache_dir / "models").is_dir():
            shutil.copytree(self.cache_dir / "models", cache_dir / "models", dirs_exist_ok=True)
        for summary in summaries:
            feature_file = Path(summary["cache"])
            (cache_dir / feature_file.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(feature_file, cache_dir / feature_file.parent.name / feature_file.name)
        return cache_dir


def refused(result, *words: str) -> str:
    """The one-line error of a refused command (exit 2), which names ``words``."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def logreg_run(root: Path) -> dict:
    """``{"data", "cache", "run"}``: a small synthetic folder under ``root``, its features (VGG16, random weights,
    32 px) and a logreg run on them."""
    from pipeline import extract, train

    data = make_folder(root / "data", {"train": 5, "val": 3})
    cache = extract(data, backbone="vgg16", image_size=32, weights="none", batch_size=8,
                    cache_dir=str(root / "cache"))["cache"]
    return {"data": data, "cache": cache, "run": train(cache, "logreg", runs_root=root / "runs")["run_dir"]}

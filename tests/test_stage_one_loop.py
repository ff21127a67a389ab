"""The stage-one loop both engines run: augmented views by key, unreadable files by index, one part file per
batch, per-batch timings. A stand-in runtime (each image's mean colour) keeps it fast."""

import h5py
import numpy as np

from pipeline import backbones
from pipeline.augment import augment_view
from pipeline.engines import FrozenBase, loop
from pipeline.images import load_image
from pipeline.store import Parts
from helpers import make_image


class MeanColour:
    """A runtime whose features are each image's mean colour."""

    def features(self, pixels: np.ndarray) -> np.ndarray:
        return pixels.mean(axis=(1, 2)).astype(np.float32)


def test_views_failures_parts_and_timings(tmp_path):
    spec = backbones.get("vgg16")
    job = FrozenBase(spec, 32, "avg", "backbone", "float32", backbones.resolve_weights(spec, 32, "none"), batch_size=2,
              policy="rotate=0.3,brightness=0.5", seed=7)
    image = str(make_image(tmp_path / "a.png", (200, 50, 40), 1))
    broken = tmp_path / "b.png"
    broken.write_bytes(b"not a picture")
    files, keys = [image, image, str(broken)], [("aa" * 32, 0), ("aa" * 32, 1), ("bb" * 32, 0)]
    seen: list[int] = []
    outcome = loop.run(MeanColour(), job, files, keys, Parts(tmp_path / "parts"), seen.append)

    assert outcome.computed == 2 and list(outcome.failed) == [2] and seen == [2, 1]
    assert set(outcome.timings) == {"decode", "infer", "write", "compute"}
    (part,) = sorted((tmp_path / "parts").glob("part-*.h5"))  # the last batch had no readable file
    with h5py.File(part) as f:
        views, features = f["view"][()].tolist(), f["features"][()]
    pixels = load_image(image, 32)[0]
    expected = [pixels.mean(axis=(0, 1)), augment_view(pixels, job.policy, "aa" * 32, 1, 7).mean(axis=(0, 1))]
    assert views == [0, 1] and np.abs(expected[0] - expected[1]).max() > 1
    np.testing.assert_allclose(features, expected, rtol=1e-5)

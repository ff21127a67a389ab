"""Augmented views on the Ray engine: the actors run the local engine's stage-one loop, so the same keys get
the same features, and their per-batch timings come back to the driver."""

import importlib.util

import numpy as np
import pytest

from pipeline import FeatureFile, extract

pytestmark = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                reason="Ray Data not installed (pip install -e '.[ray]')")
AUGMENT = dict(augment=2, augment_policy="flip,rotate=0.2", seed=3)


def rows(summary: dict) -> dict:
    """``{(split, path, view): (label, features)}`` of a feature file."""
    with FeatureFile(summary["cache"]) as f:
        return {(s, p, int(v)): (int(y), x) for s in f.splits
                for p, v, y, x in zip(f.column(s, "paths"), f.column(s, "view"), f.column(s, "labels"),
                                      f.features(s)[()])}


def test_augmented_views_on_ray_match_local(ray_address, tiny_data, fast_args, tmp_path):
    local = extract(tiny_data, **fast_args, **AUGMENT)
    remote = extract(tiny_data, **{**fast_args, "cache_dir": str(tmp_path / "ray")}, **AUGMENT, engine="ray",
                     engine_options={"workers": 2})
    assert remote["splits"] == local["splits"] == {"train": 36, "val": 6, "test": 4}
    assert remote["computed"] == local["computed"] == 46
    a, b = rows(local), rows(remote)
    assert a.keys() == b.keys() and all(a[k][0] == b[k][0] for k in a)
    assert max(float(np.abs(a[k][1] - b[k][1]).max()) for k in a) <= 1e-4
    first = next(k for k in b if k[2] == 1)
    assert np.abs(b[first][1] - b[(first[0], first[1], 0)][1]).max() > 1e-3  # a view is not the image itself
    assert all(remote["timings"][name] > 0 for name in ("decode", "infer", "write"))

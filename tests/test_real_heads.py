"""Stage two on real photos with real MobileNetV2 ImageNet weights (skipped when ../shared is absent)."""

import numpy as np
import pytest

from helpers import SHARED_DATA, SHARED_WEIGHTS, needs_shared
from pipeline import compare, export, predict
from pipeline.heads import names
from pipeline.images import load_image

pytestmark = pytest.mark.slow  # together a minute or more: started first (conftest.py)

# dataset -> (input size, floor on the best head's val accuracy)
FLOORS = {"urban_rural": (160, 0.95), "hymenoptera": (224, 0.92), "hotdog_nothotdog": (224, 0.88)}


@pytest.fixture(scope="module")
def caches(tmp_path_factory, shared_extracts):
    root = tmp_path_factory.mktemp("real_heads")
    return {name: shared_extracts(name, backbone="mobilenet_v2", image_size=size)["cache"]
            for name, (size, _) in FLOORS.items()}, root


@needs_shared
@pytest.mark.parametrize("name", list(FLOORS))
def test_best_head_holds_the_val_floor(caches, name):
    paths, root = caches
    rows = compare(paths[name], runs_root=root / "runs")
    table = {r["head"]: r["val_accuracy"] for r in rows}
    assert set(table) == set(names())
    assert max(table.values()) >= FLOORS[name][1], table
    assert table["logreg"] >= FLOORS[name][1] - 0.03, table


@needs_shared
def test_predict_and_export_agree_on_real_photos(caches, tmp_path):
    import keras

    paths, root = caches
    [row] = compare(paths["urban_rural"], ["logreg"], runs_root=root / "runs")
    files = sorted(str(p) for p in (SHARED_DATA / "urban_rural" / "val").rglob("*.jp*g"))[::4]
    predicted = predict(row["run_dir"], files, weights_dir=str(SHARED_WEIGHTS))
    export(row["run_dir"], tmp_path / "m.keras", weights_dir=str(SHARED_WEIGHTS))
    model = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    exported = model.predict(np.stack([load_image(f, 160)[0] for f in files]).astype("float32"), verbose=0)
    expected = np.array([[r["probabilities"][c] for c in ("rural", "urban")] for r in predicted])
    np.testing.assert_allclose(exported, expected, atol=1e-3)
    assert [("rural", "urban")[i] for i in exported.argmax(axis=1)] == [r["label"] for r in predicted]
    assert np.mean([r["label"] == f.split("/")[-2] for r, f in zip(predicted, files)]) >= 0.8

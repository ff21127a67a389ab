"""DenseNet121/169: registry entries, torch-style preprocessing, and the real ImageNet weights in ../shared."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline import backbones, extract, load
from pipeline.assemble import preprocessing_layers
from helpers import SHARED_DATA, SHARED_WEIGHTS, needs_shared


@pytest.mark.parametrize("name", ["densenet121", "densenet169"])
def test_registry_names_keras_weights_file(name):
    spec = backbones.get(name)
    assert spec.mode == "torch" and spec.default_size == 224
    assert spec.weights_filename(160) == f"{name}_weights_tf_dim_ordering_tf_kernels_notop.h5"


def test_torch_preprocessing_matches_keras():
    import keras

    x = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    (layer,) = preprocessing_layers(backbones.get("densenet121"), "backbone")
    expected = keras.applications.densenet.preprocess_input(x.copy())
    np.testing.assert_allclose(np.asarray(layer(x)), expected, atol=1e-5)


@needs_shared
@pytest.mark.parametrize("name", ["densenet121", "densenet169"])
def test_real_weights_load_offline(name):
    spec = backbones.get(name)
    weights = backbones.resolve_weights(spec, 160, "imagenet", str(SHARED_WEIGHTS))
    assert weights.path.startswith(str(SHARED_WEIGHTS)) and not weights.note  # one file serves every size
    model = backbones.build(spec, 64, "avg", weights)
    assert model.output_shape == (None, {"densenet121": 1024, "densenet169": 1664}[name])


@needs_shared
def test_densenet121_separates_urban_rural(tmp_path):
    s = extract(SHARED_DATA / "urban_rural", backbone="densenet121", image_size=160, runtime="tensorflow",
                weights_dir=str(SHARED_WEIGHTS), cache_dir=str(tmp_path))
    Xtr, ytr, _ = load(s["cache"], "train")
    Xva, yva, _ = load(s["cache"], "val")
    assert Xtr.shape == (72, 1024)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(Xtr, ytr)
    assert clf.score(Xva, yva) >= 0.95

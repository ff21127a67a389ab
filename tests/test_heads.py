"""Every head behind the scikit-learn API, on small synthetic feature arrays."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

import pipeline.heads
from pipeline.errors import PipelineError
from pipeline.heads import _numpy_predict, head_class, make_head, names
from pipeline.heads.base import Head
from pipeline.heads.dense import parse_units

FAST = {"dense": {"epochs": 40, "patience": 5, "units": "16", "lr": 1e-2}}
MECHANICS = {"dense": {**FAST["dense"], "epochs": 3}}  # for tests that compare two views of one fitted head


def features(n_per_class: int, seed: int, shape=(24,), classes: int = 2, shift: float = 1.5):
    """Non-negative, pooled-like features whose class shows in a few dimensions."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    X = rng.gamma(2.0, 0.5, (len(y), *shape)).astype(np.float32)
    flat = X.reshape(len(y), -1)
    for c in range(classes):
        flat[y == c, c * 3:(c + 1) * 3] += shift
    return X, y


@pytest.mark.parametrize("name", names())
def test_head_learns_and_reloads_from_its_saved_state(name, tmp_path):
    X, y = features(30, 0, classes=3)
    Xv, yv = features(10, 1, classes=3)
    head = make_head(name, **FAST.get(name, {})).fit(X, y, Xv, yv)
    proba = head.predict_proba(Xv)
    assert proba.shape == (30, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert head.score(Xv, yv) >= 0.9
    assert set(head.selected()) and list(head.classes_) == [0, 1, 2]
    saved = head.save(tmp_path)
    assert saved.suffix in (".npz", ".keras")
    again = type(head).load(tmp_path, head.get_params())
    np.testing.assert_allclose(again.predict_proba(Xv), proba, atol=1e-6)
    np.testing.assert_array_equal(again.predict(Xv), head.predict(Xv))
    params = head.get_params()
    older = type(head).load(tmp_path, {**params, "seed": params.pop("random_state") + 4})  # runs before the rename
    assert older.random_state == 4 and "seed" not in older.get_params()
    np.testing.assert_allclose(older.predict_proba(Xv), proba, atol=1e-6)


@pytest.mark.parametrize("name", sorted(_numpy_predict.PREDICTORS))
@pytest.mark.parametrize("classes", [2, 3])
def test_saved_heads_predict_with_numpy_alone(name, classes, tmp_path):
    X, y = features(20, 15, shape=(2, 2, 6), classes=classes)
    Xv, yv = features(8, 16, shape=(2, 2, 6), classes=classes)
    head = make_head(name, **MECHANICS.get(name, {})).fit(X, y, Xv, yv)
    head.save(tmp_path)
    proba, count = _numpy_predict.load(name, tmp_path)
    assert count == classes
    np.testing.assert_allclose(proba(Xv), head.predict_proba(Xv), atol=1e-6)
    assert _numpy_predict.load("knn", tmp_path) is None  # heads without a numpy predictor load as themselves


def test_a_dense_head_predicts_without_keras_and_older_runs_still_load(tmp_path):
    X, y = features(20, 17, classes=3)
    head = make_head("dense", **{**MECHANICS["dense"], "units": "16,8"}).fit(X, y)
    head.save(tmp_path)
    code = ("import sys, numpy as np\nfrom pipeline.heads import _numpy_predict\n"
            f"proba, _ = _numpy_predict.load('dense', {str(tmp_path)!r})\n"
            f"np.save({str(tmp_path / 'p.npy')!r}, proba(np.load({str(tmp_path / 'X.npy')!r})))\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'tensorflow', 'keras'}))")
    np.save(tmp_path / "X.npy", X)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(pipeline.heads.__file__).parents[2]).stdout
    assert out.strip() == "[]"
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), head.predict_proba(X), atol=1e-6)
    with np.load(tmp_path / "head.npz") as f:
        arrays = dict(f)
    np.savez(tmp_path / "head.npz", **{**arrays, "kernel_1": arrays["kernel_1"][:3]})
    with pytest.raises(ValueError, match="do not chain"):
        _numpy_predict.load("dense", tmp_path)
    (tmp_path / "head.npz").unlink()  # a dense run saved before its arrays were
    assert _numpy_predict.load("dense", tmp_path) is None


@pytest.mark.parametrize("name", names())
def test_an_unfitted_head_says_so(name, tmp_path):
    head = make_head(name)
    X = np.zeros((2, 4), np.float32)
    for use in (head.predict_proba, head.predict, head.save, head.export_layers):
        with pytest.raises(NotFittedError, match="not fitted"):
            use(tmp_path if use == head.save else (4,) if use == head.export_layers else X)


@pytest.mark.parametrize("name", names())
def test_export_layers_give_the_heads_probabilities(name):
    import keras

    X, y = features(20, 12, shape=(2, 2, 6))
    Xv, _ = features(5, 13, shape=(2, 2, 6))
    head = make_head(name, **MECHANICS.get(name, {})).fit(X, y, Xv, _)
    if name == "knn":
        with pytest.raises(PipelineError, match="knn head cannot be exported.* --head .*logreg"):
            head.export_layers(X.shape[1:])
        return
    model = keras.Sequential([keras.Input(X.shape[1:]), *head.export_layers(X.shape[1:])])
    np.testing.assert_allclose(np.asarray(model(Xv)), head.predict_proba(Xv), atol=1e-5)


def test_knn_keeps_its_own_rows_and_labels(tmp_path):
    X, y = features(6, 14, classes=3)
    y = np.array([3, 5, 9])[y]  # labels that are not 0..k-1, unlike the neighbours' encoded ones
    head = make_head("knn").fit(X, y)
    np.testing.assert_array_equal(head.X_, X.reshape(len(X), -1))
    np.testing.assert_array_equal(head.y_, y)
    head.save(tmp_path)
    with np.load(tmp_path / "head.npz", allow_pickle=False) as f:
        assert sorted(f.files) == ["X", "k", "y"]
        np.testing.assert_array_equal(f["y"], y)
    again = type(head).load(tmp_path, head.get_params())
    assert list(again.classes_) == [3, 5, 9] and again.k_ == head.k_
    np.testing.assert_array_equal(again.predict(X), head.predict(X))


def test_every_head_module_is_a_head_and_listing_them_imports_no_scikit_learn():
    folder = Path(pipeline.heads.__file__).parent
    modules = {p.stem for p in folder.glob("*.py") if p.stem != "base" and not p.stem.startswith("_")}
    assert set(names()) == modules and {"logreg", "dense", "svm", "knn"} <= modules
    for name in names():
        assert issubclass(head_class(name), Head) and head_class(name).name == name
    code = ("import sys, pipeline.heads as h; h.names(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'tensorflow', 'keras'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=folder.parents[1]).stdout  # this checkout's pipeline, first on the path
    assert out.strip() == "[]"
    from pipeline.cli.train import compare, train

    assert list([p for p in train.params if p.name == "head"][0].type.choices) == names()
    assert [p for p in compare.params if p.name == "heads"][0].default == ",".join(names())


@pytest.mark.parametrize("name", ["logreg", "svm", "knn"])
def test_without_val_hyperparameters_come_from_cross_validation(name):
    X, y = features(20, 2)
    groups = np.repeat(np.arange(20), 2)  # pairs of views of one image stay in one fold
    head = make_head(name).fit(X, y, groups=groups)
    assert head.score(*features(10, 3)) >= 0.9


def test_val_drives_the_choice_of_C():
    X, y = features(40, 4, shift=0.6)
    Xv, yv = features(40, 5, shift=0.6)
    strong = make_head("logreg", Cs=(1e-4,)).fit(X, y, Xv, yv)
    chosen = make_head("logreg").fit(X, y, Xv, yv)
    assert chosen.C_ in make_head("logreg").Cs
    from sklearn.metrics import log_loss
    assert log_loss(yv, chosen.predict_proba(Xv)) <= log_loss(yv, strong.predict_proba(Xv)) + 1e-9


@pytest.mark.parametrize("name", ["logreg", "dense"])
def test_feature_maps_are_flattened(name):
    X, y = features(20, 6, shape=(2, 2, 6))
    Xv, yv = features(8, 7, shape=(2, 2, 6))
    head = make_head(name, **FAST.get(name, {})).fit(X, y, Xv, yv)
    assert head.predict_proba(Xv).shape == (16, 2) and head.score(Xv, yv) >= 0.8


def test_dense_options_shape_the_network():
    X, y = features(20, 8)
    stacked = make_head("dense", units="32,16", dropout=0.2, optimizer="rmsprop", lr=1e-3, epochs=3).fit(X, y, X, y)
    softmax_only = make_head("dense", units=0, epochs=3).fit(X, y, X, y)
    dense_sizes = lambda h: [layer.units for layer in h.model_.layers if hasattr(layer, "units")]
    assert dense_sizes(stacked) == [32, 16, 2] and dense_sizes(softmax_only) == [2]
    assert len(stacked.history_["loss"]) <= 3 and "val_accuracy" in stacked.history_
    assert type(stacked.model_.optimizer).__name__ == "RMSprop"


def test_dense_writes_tensorboard_logs(tmp_path):
    X, y = features(10, 9)
    make_head("dense", epochs=2, tensorboard=str(tmp_path / "tb")).fit(X, y, X, y)
    assert any((tmp_path / "tb").rglob("events.out.tfevents*"))


def test_a_dense_fit_does_not_depend_on_the_seed_set_before_it():
    import tensorflow as tf

    X, y = features(20, 3)
    Xv, yv = features(5, 4)
    histories = []
    for before in (None, 123):  # None: TensorFlow's state in a fresh process
        tf.random.set_seed(before)
        histories.append(make_head("dense", **MECHANICS["dense"]).fit(X, y, Xv, yv).history_)
    assert histories[0] == histories[1]


def test_a_short_dense_fit_runs_eagerly_and_learns_what_a_traced_one_does(monkeypatch):
    from pipeline.heads import dense

    X, y = features(20, 3)
    Xv, yv = features(5, 4)
    assert not make_head("dense", epochs=dense.EAGER_STEPS + 1)._build(X, 2, rows=20).run_eagerly  # one batch each
    eager = make_head("dense", units="8", epochs=5).fit(X, y, Xv, yv)
    monkeypatch.setattr(dense, "EAGER_STEPS", 0)
    traced = make_head("dense", units="8", epochs=5).fit(X, y, Xv, yv)
    assert eager.model_.run_eagerly and not traced.model_.run_eagerly
    np.testing.assert_allclose(eager.predict_proba(Xv), traced.predict_proba(Xv), atol=1e-5)


@pytest.mark.parametrize("name", ["logreg", "dense", "dense-large"])  # large: rows through Keras's own pass
def test_balanced_class_weight_helps_the_small_class(name, monkeypatch):
    if name == "dense-large":
        from pipeline.heads import dense

        monkeypatch.setattr(dense, "SMALL_FIT_BYTES", 0)
        name = "dense"
    X, y = features(60, 10, shift=0.5)
    keep = np.r_[np.arange(60), np.arange(60, 66)]  # 60 vs 6
    Xv, yv = features(50, 11, shift=0.5)
    options = {"logreg": {"Cs": (1e-2,)}, "dense": FAST["dense"]}[name]
    plain = make_head(name, **options).fit(X[keep], y[keep], Xv, yv)
    balanced = make_head(name, **options, class_weight="balanced").fit(X[keep], y[keep], Xv, yv)
    recall = lambda h: (h.predict(Xv)[yv == 1] == 1).mean()
    assert recall(balanced) > recall(plain)


def test_bad_options_are_refused_by_name():
    with pytest.raises(PipelineError, match="--units does not apply to --head logreg"):
        make_head("logreg", units=256)
    with pytest.raises(PipelineError, match=f"unknown head 'forest'; choose one of: {', '.join(names())}$"):
        make_head("forest")
    with pytest.raises(PipelineError, match="balanced"):
        make_head("svm", class_weight="auto")
    with pytest.raises(PipelineError, match="knn has no class weights"):
        make_head("knn", class_weight="balanced").fit(*features(5, 0))
    with pytest.raises(PipelineError, match="at least 2 train images per class"):
        make_head("logreg").fit(*features(1, 0))
    assert parse_units("4096,4096") == (4096, 4096) and parse_units(0) == () and parse_units([256]) == (256,)
    with pytest.raises(PipelineError, match="comma-separated"):
        parse_units("big")

"""predict (recorded backbone + head on new images) and export (one Keras model) agree."""

import csv
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import make_folder, make_image
from pipeline import export, extract, predict, train
from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.images import load_image
from pipeline.prediction import Extractor
from pipeline.runs import open_run
from pipeline.store import FeatureFile

pytestmark = pytest.mark.slow  # together a minute or more: started first (conftest.py)

SIZE = 32


@pytest.fixture
def setup(tiny_runs):
    """The session's tiny runs (conftest); the tests here only read them."""
    return tiny_runs


def test_new_features_equal_the_cached_ones(setup):
    with FeatureFile(setup["cache"]) as f:
        paths, cached = f.column("val", "paths"), f.load("val")[0]
    extractor = Extractor(open_run(setup["runs"]["logreg"]).features, batch_size=3)
    pixels = np.stack([load_image(str(setup["data"] / p), SIZE)[0] for p in paths])
    np.testing.assert_allclose(extractor(pixels), cached, atol=1e-5)


def test_predict_folders_and_files_reports_unreadable_ones(setup, tmp_path):
    junk = tmp_path / "notes.jpg"
    junk.write_text("not an image")
    run = setup["runs"]["svm"]
    results = predict(run, [setup["data"] / "val", junk])
    assert len(results) == 9 and results[-1]["label"] is None and "not an image" in results[-1]["error"]
    by_name = {r["path"].split("/")[-1]: r for r in results[:-1]}
    with open(f"{run}/predictions-val.csv") as fh:
        expected = {row["path"].split("/")[-1]: row for row in csv.DictReader(fh)}
    for name, r in by_name.items():
        assert r["label"] == expected[name]["predicted"]
        assert abs(r["probabilities"]["red"] - float(expected[name]["p_red"])) < 1e-4
        assert abs(sum(r["probabilities"].values()) - 1) < 1e-5


@pytest.mark.parametrize("head", ["logreg", "svm", "dense"])
def test_exported_model_matches_predict(setup, tmp_path, head):
    import keras

    run = setup["runs"][head]
    files = sorted(str(p) for p in (setup["data"] / "val").rglob("*.png"))
    out = export(run, tmp_path / "model.keras")
    assert out["input_shape"] == [SIZE, SIZE, 3] and out["classes"] == ["blue", "red"]
    model = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    pixels = np.stack([load_image(f, SIZE)[0] for f in files]).astype("float32")
    exported = np.asarray(model.predict(pixels, verbose=0))
    expected = predict(run, files)
    np.testing.assert_allclose(exported, [[r["probabilities"][c] for c in out["classes"]] for r in expected],
                               atol=1e-3)
    assert [out["classes"][i] for i in exported.argmax(axis=1)] == [r["label"] for r in expected]


def test_savedmodel_serves_the_same_probabilities(setup, tmp_path):
    import tensorflow as tf

    run = setup["runs"]["logreg"]
    export(run, tmp_path / "saved", format="savedmodel")
    files = sorted(str(p) for p in (setup["data"] / "val").rglob("*.png"))[:3]
    pixels = np.stack([load_image(f, SIZE)[0] for f in files]).astype("float32")
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    served = loaded.serve(tf.constant(pixels)).numpy()
    np.testing.assert_allclose(served, [[r["probabilities"][c] for c in ("blue", "red")] for r in predict(run, files)],
                               atol=1e-3)


def test_refusals_are_clear(setup, tmp_path):
    with pytest.raises(PipelineError, match="knn head cannot be exported"):
        export(setup["runs"]["knn"], tmp_path / "m.keras")
    with pytest.raises(PipelineError, match="must end in .keras"):
        export(setup["runs"]["logreg"], tmp_path / "m.h5")
    with pytest.raises(PipelineError, match="not a run directory"):
        predict(tmp_path, [setup["data"]])
    with pytest.raises(PipelineError, match="not found"):
        predict(setup["runs"]["logreg"], [tmp_path / "nowhere"])


def test_weights_must_be_the_recorded_file(setup, tmp_path):
    weights = shutil.copy(setup["weights"], tmp_path / "w.weights.h5")
    data = make_folder(tmp_path / "d", {"train": 3})
    cache = extract(data, backbone="vgg16", image_size=SIZE, weights=weights, cache_dir=str(tmp_path / "c"))
    run = train(cache["cache"], "logreg", run_dir=tmp_path / "run")["run_dir"]
    with open(weights, "ab") as fh:
        fh.write(b"\0")  # another file at the recorded path
    with pytest.raises(PipelineError, match="is not the one the features were made with"):
        predict(run, [data])


def test_random_weights_cannot_be_rebuilt(tmp_path):
    data = make_folder(tmp_path / "d", {"train": 3})
    cache = extract(data, backbone="mobilenet_025", image_size=SIZE, weights="none", cache_dir=str(tmp_path / "c"))
    run = train(cache["cache"], "knn", run_dir=tmp_path / "run")["run_dir"]
    with pytest.raises(PipelineError, match="random weights"):
        predict(run, [data])


def test_cli_predict_json_csv_and_export(setup, tmp_path):
    run = setup["runs"]["logreg"]
    img = make_image(tmp_path / "new.png", (200, 50, 40), seed=99)
    runner = CliRunner()
    r = runner.invoke(main, ["predict", run, str(img), "--json"])
    assert r.exit_code == 0, r.output
    [row] = json.loads(r.stdout)
    assert set(row) == {"path", "label", "probabilities"} and set(row["probabilities"]) == {"blue", "red"}
    r = runner.invoke(main, ["predict", run, str(img), "--output", str(tmp_path / "p.csv")])
    assert r.exit_code == 0 and next(csv.DictReader(open(tmp_path / "p.csv")))["label"] == row["label"]
    r = runner.invoke(main, ["export", run, "--output", str(tmp_path / "m.keras"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["format"] == "keras" and (tmp_path / "m.keras").is_file()

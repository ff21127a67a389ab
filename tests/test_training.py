"""train / compare / evaluate_run and their run directories, on a tiny extracted cache."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import make_folder
from pipeline import compare, evaluate_run, extract, train
from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.runs import open_run
from pipeline.training import read_features

FAST_ARGS = dict(backbone="mobilenet_025", image_size=32, weights="none", batch_size=16)
DENSE = {"units": "8", "epochs": 5, "patience": 2}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = make_folder(root / "colors", {"train": 8, "val": 4, "test": 3})
    return extract(data, cache_dir=str(root / "cache"), **FAST_ARGS)["cache"]


def test_train_writes_a_complete_run_directory(cache, tmp_path):
    result = train(cache, "logreg", seed=3, runs_root=tmp_path / "runs")
    run = tmp_path / "runs" / result["run_dir"].split("/")[-1]
    assert run.name.startswith("colors-mobilenet_025-32-avg-random-logreg-")
    assert {p.name for p in run.iterdir()} == {"config.json", "metrics.json", "head.npz", "confusion.png",
                                              "predictions-train.csv", "predictions-val.csv", "predictions-test.csv"}
    config = json.loads((run / "config.json").read_text())
    assert config["head"] == "logreg" and config["seed"] == 3 and config["classes"] == ["blue", "red"]
    assert config["features"]["backbone"] == "mobilenet_025" and config["features"]["input_size"] == 32
    assert len(config["fingerprint"]) == 16 and "C" in config["selected"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"train", "val", "test"} and metrics == result["metrics"]
    test = metrics["test"]
    assert test["images"] == 6 and np.array(test["confusion_matrix"]).sum() == 6
    assert set(test["per_class"]["red"]) == {"precision", "recall", "f1", "support"} and test["fit_seconds"] >= 0
    rows = list(csv.DictReader(open(run / "predictions-val.csv")))
    assert len(rows) == 8 and set(rows[0]) == {"path", "true", "predicted", "p_blue", "p_red"}
    assert sum(r["true"] == r["predicted"] for r in rows) / 8 == metrics["val"]["accuracy"]
    assert (run / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_dense_run_has_a_keras_head_and_training_curves(cache, tmp_path):
    result = train(cache, "dense", DENSE, run_dir=tmp_path / "d")
    assert (tmp_path / "d" / "head.keras").is_file() and (tmp_path / "d" / "curves.png").is_file()
    assert result["selected"]["epochs"] <= 5
    again = evaluate_run(tmp_path / "d", cache)
    assert again["test"]["accuracy"] == result["metrics"]["test"]["accuracy"]


def test_same_seed_same_metrics(cache, tmp_path):
    a = train(cache, "dense", DENSE, seed=7, run_dir=tmp_path / "a")
    b = train(cache, "dense", DENSE, seed=7, run_dir=tmp_path / "b")
    assert a["metrics"] == {s: {**m, "fit_seconds": a["fit_seconds"]} for s, m in b["metrics"].items()}


def test_compare_fits_every_head_on_the_same_features(cache, tmp_path):
    rows = compare(cache, ["logreg", "svm", "knn"], runs_root=tmp_path)
    assert [r["head"] for r in rows] == ["logreg", "svm", "knn"]
    for r in rows:
        assert set(r) == {"head", "val_accuracy", "test_accuracy", "fit_seconds", "run_dir"}
        assert 0 <= r["val_accuracy"] <= 1 and open_run(r["run_dir"]).config["head"] == r["head"]
    with pytest.raises(PipelineError, match="unknown head forest"):
        compare(cache, ["logreg", "forest"])


def test_a_head_refuses_features_of_another_config(cache, tmp_path):
    run = train(cache, "logreg", run_dir=tmp_path / "run")["run_dir"]
    data = read_features(cache).config["dataset_root"]
    other = extract(data, cache_dir=str(tmp_path / "c"), **{**FAST_ARGS, "image_size": 40})["cache"]
    with pytest.raises(PipelineError, match="input_size 40 vs 32"):
        evaluate_run(run, other)
    assert evaluate_run(run, cache)["val"]["accuracy"] >= 0


@pytest.mark.parametrize("head", ["logreg", "dense"])
def test_a_run_directory_that_records_seed_among_the_head_params_still_loads(cache, tmp_path, head):
    result = train(cache, head, DENSE if head == "dense" else None, seed=5, run_dir=tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["seed"] == 5 and config["params"]["random_state"] == 5
    params = {k: v for k, v in config["params"].items() if k != "random_state"}
    (tmp_path / "run" / "config.json").write_text(json.dumps({**config, "params": {**params, "seed": 5}}))
    assert open_run(tmp_path / "run").head().random_state == 5
    assert evaluate_run(tmp_path / "run", cache)["test"] == {k: v for k, v in result["metrics"]["test"].items()
                                                              if k != "fit_seconds"}


def test_augmented_views_train_but_only_images_are_evaluated(tmp_path):
    data = make_folder(tmp_path / "aug", {"train": 6, "val": 3})
    cache = extract(data, cache_dir=str(tmp_path / "c"), augment=2, **FAST_ARGS)["cache"]
    result = train(cache, "logreg", run_dir=tmp_path / "run")
    config = open_run(tmp_path / "run").config
    assert config["rows"]["train"] == 36 and result["metrics"]["train"]["images"] == 12


def test_cli_train_and_compare_json(cache, tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["train", cache, "--head", "dense", "--units", "8", "--epochs", "3", "--json",
                             "--runs-root", str(tmp_path)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["head"] == "dense" and set(out["metrics"]) == {"train", "val", "test"}
    r = runner.invoke(main, ["compare", cache, "--heads", "logreg,knn", "--json", "--runs-root", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert [row["head"] for row in json.loads(r.stdout)] == ["logreg", "knn"]
    r = runner.invoke(main, ["compare", cache, "--heads", "logreg", "--runs-root", str(tmp_path)])
    assert r.stdout.splitlines()[0].split()[:3] == ["head", "val", "acc"] and "logreg" in r.stdout


def test_cli_refuses_options_of_another_head_in_one_line(cache):
    r = CliRunner().invoke(main, ["train", cache, "--head", "svm", "--units", "256"])
    assert r.exit_code == 2 and "--units does not apply to --head svm" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["train", "missing.h5"])
    assert r.exit_code == 2 and "run `transfer extract` first" in r.output

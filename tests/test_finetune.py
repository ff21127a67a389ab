"""Stage three: fine-tuning a dense run end to end; dry-run counts; the run directory predict/export read."""

import csv
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import SHARED_WEIGHTS, make_folder, needs_shared
from pipeline import PipelineError, extract
from pipeline.cli import main
from pipeline.finetuning import build, finetune, unfreeze
from pipeline.photos import Photos
from pipeline.runs import open_run
from pipeline.training import train

pytestmark = pytest.mark.slow  # together a minute or more: started first (conftest.py)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """A tiny dataset, a weights file for mobilenet_025 at 32 px, its cache, and a dense and a logreg run."""
    from pipeline import backbones

    tmp = tmp_path_factory.mktemp("finetune")
    weights = tmp / "mobilenet_025.weights.h5"
    backbones.build(backbones.get("mobilenet_025"), 32, "avg", backbones.Weights("none", None, "none")).save_weights(weights)
    data = make_folder(tmp / "data", {"train": 6, "val": 3})
    s = extract(data, backbone="mobilenet_025", image_size=32, weights=str(weights), cache_dir=str(tmp / "cache"))
    dense = train(s["cache"], "dense", {"units": "8", "epochs": 3}, runs_root=str(tmp / "runs"))["run_dir"]
    logreg = train(s["cache"], "logreg", runs_root=str(tmp / "runs"))["run_dir"]
    return {"tmp": tmp, "data": data, "cache": s["cache"], "dense": dense, "logreg": logreg}


def _keras_summary_counts(model) -> dict:
    lines = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line))
    text = "\n".join(lines)
    return {key: int(re.search(rf"{label}: ([\d,]+)", text).group(1).replace(",", ""))
            for key, label in (("total_params", "Total params"), ("trainable_params", "Trainable params"),
                               ("non_trainable_params", "Non-trainable params"))}


def _base_weights(path: str) -> list:
    from pipeline import backbones

    weights = backbones.Weights(path, path, "")
    return backbones.build(backbones.get("mobilenet_025"), 32, "avg", weights).get_weights()


@pytest.mark.parametrize("top", [0, 10])
def test_dry_run_counts_match_keras_summary(runs, top):
    r = finetune(runs["dense"], unfreeze_top=top, dry_run=True)
    model, base, _ = build(open_run(runs["dense"]))
    unfreeze(base, top)
    keras_counts = _keras_summary_counts(model)
    assert {k: r[k] for k in keras_counts} == keras_counts
    assert r["total_params"] == model.count_params()
    assert r["unfrozen"] == top
    head_trainable = next(x["trainable"] for x in r["layers"] if x["type"] == "Sequential")
    assert (r["trainable_params"] == head_trainable) == (top == 0)


def test_fine_tuning_trains_a_base_of_its_own(runs):
    from pipeline.assemble import assemble_recorded

    run = open_run(runs["dense"])
    _, shared = assemble_recorded(run.features)
    _, base, _ = build(run)
    assert base is not shared and assemble_recorded(run.features)[1] is shared


def test_unfreeze_from_a_layer_name_equals_the_same_top_count(runs):
    by_count = finetune(runs["dense"], unfreeze_top=10, dry_run=True)
    by_name = finetune(runs["dense"], unfreeze_from=by_count["first_unfrozen"], dry_run=True)
    assert by_name["trainable_params"] == by_count["trainable_params"] and by_name["unfrozen"] == 10


def test_bad_requests_say_what_to_do(runs):
    with pytest.raises(PipelineError, match="starts from a dense head"):
        finetune(runs["logreg"], dry_run=True)
    with pytest.raises(PipelineError, match="did you mean conv_pw_12"):
        finetune(runs["dense"], unfreeze_from="conv_pw12", dry_run=True)
    with pytest.raises(PipelineError, match="not both"):
        finetune(runs["dense"], unfreeze_top=3, unfreeze_from="conv_pw_12", dry_run=True)
    with pytest.raises(PipelineError, match="--unfreeze must be between 0 and"):
        finetune(runs["dense"], unfreeze_top=10_000, dry_run=True)
    with pytest.raises(PipelineError, match="unknown augmentation"):
        finetune(runs["dense"], augment="flip,swirl", dry_run=True)


def test_finetune_writes_a_run_that_predict_and_export_rebuild(runs):
    import keras

    from pipeline.deploy.exporting import export
    from pipeline.prediction import predict

    out = runs["tmp"] / "ft"
    r = finetune(runs["dense"], unfreeze_top=12, epochs=2, lr=1e-2, patience=5, out_dir=out)
    assert set(r["metrics"]) == {"train", "val"} and r["metrics"]["val"]["images"] == 6
    assert r["baseline"] == json.loads((Path(runs["dense"]) / "metrics.json").read_text())
    assert r["epochs_trained"] == 2 and r["epoch_kept"] in (0, 1, 2)
    config = json.loads((out / "config.json").read_text())
    source = json.loads((Path(runs["dense"]) / "config.json").read_text())
    assert config["features"]["weights"] == "base.weights.h5"  # relative to the run: the folder can move
    before, after = (_base_weights(source["features"]["weights"]), _base_weights(str(out / "base.weights.h5")))
    changed = any(not np.array_equal(a, b) for a, b in zip(before, after))
    assert changed == (r["epoch_kept"] > 0)
    assert config["finetune"]["unfrozen"] == 12 and config["head"] == "dense"
    assert (out / "head.npz").is_file()  # predict below runs the head with numpy

    with open(out / "predictions-val.csv") as fh:
        expected = {row["path"]: float(row["p_red"]) for row in csv.DictReader(fh)}
    got = {str(Path(p["path"]).relative_to(runs["data"])): p["probabilities"]["red"]
           for p in predict(out, [runs["data"] / "val"])}
    assert got.keys() == expected.keys()
    moved = out.rename(runs["tmp"] / "ft-moved")
    got_moved = {str(Path(p["path"]).relative_to(runs["data"])): p["probabilities"]["red"]
                 for p in predict(moved, [runs["data"] / "val"])}
    assert got_moved == got
    out = moved.rename(out)
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), atol=1e-4)

    exported = export(out, runs["tmp"] / "ft.keras")
    model = keras.saving.load_model(exported["output"], safe_mode=True)
    assert model.output_shape[-1] == 2


def test_the_run_feature_file_must_have_val(runs, tmp_path):
    data = make_folder(tmp_path / "noval", {"train": 4})
    s = extract(data, backbone="mobilenet_025", image_size=32,
                weights=json.loads((Path(runs["dense"]) / "config.json").read_text())["features"]["weights"],
                cache_dir=str(tmp_path / "c"))
    run = train(s["cache"], "dense", {"units": "4", "epochs": 1}, runs_root=str(tmp_path / "r"))["run_dir"]
    with pytest.raises(PipelineError, match="stops early on val"):
        finetune(run, epochs=1, runs_root=str(tmp_path / "r"))


def test_cli_dry_run_table_and_json(runs):
    text = CliRunner().invoke(main, ["finetune", runs["dense"], "--unfreeze", "10", "--dry-run"])
    assert text.exit_code == 0, text.output
    assert "Trainable params:" in text.output and "top 10 of" in text.output and "dense_head" in text.output
    js = CliRunner().invoke(main, ["finetune", runs["dense"], "--unfreeze-from", "nope", "--dry-run", "--json"])
    assert js.exit_code == 2 and "has no layer 'nope'" in js.output


@needs_shared
def test_hotdog_finetuning_keeps_val_accuracy(tmp_path, shared_extracts):
    s = shared_extracts("hotdog_nothotdog", backbone="mobilenet_025", image_size=128)  # fine-tunes in 11 s of CPU, MobileNetV2 in 16
    dense = train(s["cache"], "dense", runs_root=str(tmp_path / "r"))
    r = finetune(dense["run_dir"], unfreeze_top=20, epochs=1, weights_dir=str(SHARED_WEIGHTS), runs_root=str(tmp_path / "r"))
    assert r["baseline"]["val"]["accuracy"] >= 0.75
    assert r["metrics"]["val"]["accuracy"] >= r["baseline"]["val"]["accuracy"] - 0.02, (r["baseline"], r["metrics"])


def test_streamed_finetune_decodes_each_pass_and_names_unreadable_photos(runs, tmp_path):
    import shutil

    data = Path(shutil.copytree(runs["data"], tmp_path / "data"))
    broken = sorted((data / "train").rglob("*.png"))[0]
    broken.write_bytes(b"not a picture")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = finetune(runs["dense"], data_dir=data, unfreeze_top=4, epochs=2, patience=5, stream=True,
                     out_dir=tmp_path / "ft")
    assert not [w for w in caught if "ran out of data" in str(w.message)]  # a streamed pass ends, as it should
    assert [x["path"] for x in r["skipped"]] == [str(broken.relative_to(data))]
    assert r["metrics"]["train"]["images"] == 11 and r["metrics"]["val"]["images"] == 6
    assert r["epochs_trained"] == 2
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["finetune"]["skipped"] == r["skipped"]


def test_held_and_streamed_photos_are_the_same_rows_and_name_the_unreadable_one(tmp_path):
    data = make_folder(tmp_path / "data", {"train": 3})
    paths = sorted(str(p.relative_to(data)) for p in (data / "train").rglob("*.png"))
    (data / paths[1]).write_bytes(b"not a picture")
    labels = np.arange(len(paths)) % 2
    held, streamed = (Photos(data, paths, labels, 32, held) for held in (True, False))
    rows = {}
    for name, photos in (("held", held), ("streamed", streamed)):
        pixels, got, files = zip(*photos.chunks())
        rows[name] = np.concatenate(pixels), np.concatenate(got), sum(files, [])
        assert photos.reasons.keys() == {paths[1]} and "Pillow" in photos.reasons[paths[1]]
    assert rows["held"][2] == rows["streamed"][2] == [p for i, p in enumerate(paths) if i != 1]
    np.testing.assert_array_equal(rows["held"][0], rows["streamed"][0])
    np.testing.assert_array_equal(rows["held"][1], np.delete(labels, 1))
    np.testing.assert_array_equal(rows["streamed"][1], np.delete(labels, 1))

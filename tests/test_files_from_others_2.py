"""Files from others, round two, the smaller items: a head of another feature width is refused in one line,
``predict --output FILE --json`` still prints its JSON, and every picture in a folder given to ``predict`` is
accounted for."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from helpers import SHARED_WEIGHTS, logreg_run, make_folder, make_image, needs_shared
from pipeline import extract, train
from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.prediction import image_files
from pipeline.runs import open_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A logreg run of a small synthetic folder (VGG16, random weights, 32 px)."""
    return Path(logreg_run(tmp_path_factory.mktemp("others2"))["run"])


def narrower(run: Path, tmp_path: Path) -> Path:
    """A copy of ``run`` whose head arrays take one feature fewer than its recorded feature_shape."""
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    with np.load(copy / "head.npz", allow_pickle=False) as f:
        state = {k: f[k] for k in f.files}
    state.update(mean=state["mean"][:-1], scale=state["scale"][:-1], coef=state["coef"][:, :-1])
    np.savez(copy / "head.npz", **state)
    return copy


def test_a_head_of_another_feature_width_is_refused_before_it_runs(run, tmp_path):
    copy = narrower(run, tmp_path)
    width = int(np.prod(json.loads((copy / "config.json").read_text())["feature_shape"]))
    for load in (lambda r: r.predict_proba(), lambda r: r.head()):  # predict's and export's way in
        with pytest.raises(PipelineError, match=f"takes {width - 1} features per image.*\\({width}\\)"):
            load(open_run(copy))


def test_a_keras_head_of_another_feature_width_is_refused(run, tmp_path):
    import keras

    cache = json.loads((run / "config.json").read_text())["cache"]
    dense = Path(train(cache, "dense", {"units": "4", "epochs": 1}, run_dir=tmp_path / "dense")["run_dir"])
    width = int(np.prod(json.loads((dense / "config.json").read_text())["feature_shape"]))
    other = keras.Sequential([keras.Input((width + 3,)), keras.layers.Dense(2, activation="softmax")])
    other.save(dense / "head.keras")
    with pytest.raises(PipelineError, match=f"takes {width + 3} features per image"):
        open_run(dense).head()


def test_every_picture_in_a_folder_is_accounted_for(tmp_path):
    folder = tmp_path / "new"
    for name in ("a.png", "b.tif", "c.jpe", "d.heic", "e.TIFF"):
        make_image(folder / name, (200, 50, 40), 1, fmt="PNG")
    (folder / "notes.txt").write_text("not a picture")
    (folder / ".hidden.png").write_bytes(b"")
    assert [Path(f).name for f in image_files([folder])] == ["a.png", "b.tif", "c.jpe", "d.heic", "e.TIFF"]


@needs_shared
def test_predict_with_output_and_json_prints_the_json(tmp_path):
    data = make_folder(tmp_path / "data", {"train": 4, "val": 2})
    cache = extract(data, backbone="mobilenet_v2", image_size=96, weights="imagenet", weights_dir=str(SHARED_WEIGHTS),
                    batch_size=8, cache_dir=str(tmp_path / "cache"), runtime="tensorflow")["cache"]
    run = train(cache, "logreg", runs_root=tmp_path / "runs")["run_dir"]
    folder = tmp_path / "new"
    make_image(folder / "a.png", (200, 50, 40), 1)
    (folder / "b.heic").write_bytes(b"not really HEIC")
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(main, ["predict", run, str(folder), "--output", str(out), "--json",
                                       "--weights-dir", str(SHARED_WEIGHTS), "--runtime", "tensorflow"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [Path(r["path"]).name for r in rows] == ["a.png", "b.heic"] and rows[0]["label"] in ("blue", "red")
    assert rows[1]["label"] is None and rows[1]["error"]
    assert out.read_text().count("\n") == 3

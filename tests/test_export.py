"""Every export format checks itself against predict, carries its labels, and is published whole or not at all;
the Deploy snippets (docs/deploy.md) classify a photo with each runtime alone, as predict does.

Real MobileNet alpha 0.25 weights at 128 px on a small folder of hymenoptera photos (20 train, 10 val per class)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from helpers import SHARED_DATA, SHARED_WEIGHTS, needs_shared
from test_docs import deploy_snippets
from pipeline import export, extract, predict, train
from pipeline.atomic import replacing_folder
from pipeline.cli import main
from pipeline.cli.train import export_table
from pipeline.errors import PipelineError
from pipeline.deploy.formats import FORMATS, MARKER
from pipeline.deploy.check_photos import stratified
from pipeline.deploy.exporting import judge, tolerance
from pipeline.images import decode_all, load_image
from pipeline.runs import open_run

pytestmark = pytest.mark.slow  # together a minute or more: started first (conftest.py)

SIZE = 128
# every format of the registry, exported by the setup: saved_model/ for a folder, else model[-variant].<suffix>
NAMES = {name: f"model{name[name.find('-'):] if '-' in name else ''}{fmt.suffix}" if fmt.suffix else "saved_model"
         for name, fmt in FORMATS.items()}


def small_folder(root: Path) -> Path:
    """``root/{train,val}/{ants,bees}``: the first 20 train and 10 val photos of each class."""
    for split, count in (("train", 20), ("val", 10)):
        for cls in ("ants", "bees"):
            (root / split / cls).mkdir(parents=True)
            for f in sorted((SHARED_DATA / "hymenoptera" / split / cls).iterdir())[:count]:
                shutil.copy(f, root / split / cls / f.name)
    return root


def cli_export(run: str, output: Path, name: str) -> dict:
    """``transfer export RUN --format NAME --output OUTPUT --json``, its JSON report."""
    r = CliRunner().invoke(main, ["export", run, "--format", name, "--output", str(output), "--json",
                                  "--weights-dir", str(SHARED_WEIGHTS)])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Runs (logreg, dense, knn), the logreg run exported in every format, predict on the val photos and on a
    photo small enough that extract's JPEG draft leaves it whole (so a plain decode gives the same pixels)."""
    root = tmp_path_factory.mktemp("export")
    data = small_folder(root / "photos")
    cache = extract(data, backbone="mobilenet_025", image_size=SIZE, weights_dir=str(SHARED_WEIGHTS),
                    cache_dir=str(root / "cache"))["cache"]
    runs = {head: train(cache, head, {"units": "16", "epochs": 20} if head == "dense" else None,
                        run_dir=root / head)["run_dir"] for head in ("logreg", "dense", "knn")}
    reports = {name: cli_export(runs["logreg"], root / "out" / path, name) for name, path in NAMES.items()}
    files = sorted(str(p) for p in (data / "val").rglob("*.jpg"))
    photo = root / "photo.jpg"
    with Image.open(files[-1]) as im:
        im.convert("RGB").resize((200, 180)).save(photo, quality=95)
    predicted = predict(runs["logreg"], [*files, photo], str(SHARED_WEIGHTS))
    expected = np.array([[r["probabilities"][c] for c in ("ants", "bees")] for r in predicted])
    return {"root": root, "data": data, "runs": runs, "reports": reports, "out": root / "out", "photo": photo,
            "pixels": decode_all(files, SIZE)[0].astype(np.float32), "expected": expected[:-1],
            "photo_predicted": predicted[-1]}



@needs_shared
@pytest.mark.parametrize("name", list(NAMES))
def test_every_format_reads_back_as_predict(setup, name):
    fmt, report = FORMATS[name], setup["reports"][name]
    path = setup["out"] / NAMES[name]
    got = fmt.load(path)(setup["pixels"])  # the published file, run again with its own runtime
    check = report["check"]
    assert (check["split"], check["images"], check["of"]) == ("val", 20, 20)
    assert report["input_shape"] == [SIZE, SIZE, 3] and report["classes"] == ["ants", "bees"]
    assert report["ms_per_image"] > 0 and report["bytes"] > 100_000
    if fmt.tolerance is not None:
        assert np.abs(got - setup["expected"]).max() <= fmt.tolerance
        assert np.abs(fmt.load(path)(setup["pixels"][:1]) - setup["expected"][:1]).max() <= fmt.tolerance  # one photo
        assert check["max_prob_diff"] <= fmt.tolerance
        assert check["top1_agreement"] == 1.0 or fmt.tolerance > 1e-4  # float16 may flip a photo at 50/50
    else:
        assert (got.argmax(1) == setup["expected"].argmax(1)).mean() >= fmt.min_top1 >= 0.9
    if path.is_file():
        assert report["bytes"] == path.stat().st_size


@needs_shared
def test_sizes_and_int8_input(setup):
    from ai_edge_litert.interpreter import Interpreter

    size = {name: r["bytes"] for name, r in setup["reports"].items()}
    assert size["tflite-float16"] < 0.6 * size["tflite"] and size["tflite-int8"] < 0.4 * size["tflite"]
    details = Interpreter(model_path=str(setup["out"] / NAMES["tflite-int8"])).get_input_details()[0]
    assert details["dtype"] == np.uint8 and setup["reports"]["tflite-int8"]["input_dtype"] == "uint8"
    assert details["quantization"] == pytest.approx((1.0, 0), abs=0.01)  # pixels go in as they are


@needs_shared
def test_labels_travel_with_the_model(setup):
    import onnx

    assert (setup["out"] / "labels.txt").read_text() == "ants\nbees\n"
    assert (setup["out"] / "saved_model" / "labels.txt").read_text() == "ants\nbees\n"
    assert setup["reports"]["onnx"]["labels"] == str(setup["out"] / "labels.txt")
    meta = {p.key: p.value for p in onnx.load(str(setup["out"] / "model.onnx")).metadata_props}
    assert json.loads(meta["labels"]) == ["ants", "bees"]
    assert sorted(p.name for p in setup["out"].iterdir()) == sorted([*NAMES.values(), "labels.txt"])  # no leftovers


@needs_shared
def test_dense_head_exports(setup, tmp_path):
    report = export(setup["runs"]["dense"], tmp_path / "m.onnx", "onnx", str(SHARED_WEIGHTS), check_images=8)
    assert report["check"]["images"] == 8 and report["check"]["of"] == 20  # capped, and says so
    assert report["check"]["max_prob_diff"] <= FORMATS["onnx"].tolerance


@needs_shared
def test_a_file_that_disagrees_is_refused_and_never_published(setup, tmp_path, monkeypatch):
    keras_format = FORMATS["keras"]

    def perturbed(model, path, classes, calibration):
        layer = model.get_layer("probabilities")
        layer.bias.assign(layer.bias + np.array([0.0, 0.01], np.float32))
        keras_format.write(model, path, classes, calibration)

    monkeypatch.setitem(FORMATS, "keras", dataclasses.replace(keras_format, write=perturbed))
    old = tmp_path / "model.keras"
    old.write_bytes(b"an earlier export")
    r = CliRunner().invoke(main, ["export", setup["runs"]["logreg"], "--output", str(old), "--check-images", "4",
                                  "--weights-dir", str(SHARED_WEIGHTS)])
    assert r.exit_code == 2 and "differs from predict by" in r.output and "tolerance 0.0001" in r.output
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"] and old.read_bytes() == b"an earlier export"


@needs_shared
def test_refusals_name_the_fix(setup, tmp_path):
    run = setup["runs"]["logreg"]
    runner = CliRunner()
    r = runner.invoke(main, ["export", setup["runs"]["knn"], "--format", "onnx", "--output", str(tmp_path / "m.onnx")])
    assert r.exit_code == 2 and "knn head cannot be exported" in r.output
    r = runner.invoke(main, ["export", run, "--format", "tflite-int8", "--output", str(tmp_path / "m.onnx")])
    assert r.exit_code == 2 and "must end in .tflite for --format tflite-int8" in r.output
    r = runner.invoke(main, ["export", run, "--format", "tensorrt", "--output", str(tmp_path / "m")])
    assert r.exit_code == 2 and "tflite-int8" in r.output
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(PipelineError, match="is not a SavedModel folder"):
        export(run, tmp_path / "notes", "savedmodel")
    with pytest.raises(PipelineError, match="writes a folder"):
        export(run, tmp_path / "m.keras", "savedmodel")
    (tmp_path / "labels.txt").write_text("cats\ndogs\n")
    with pytest.raises(PipelineError, match="lists other classes"):
        export(run, tmp_path / "m.onnx", "onnx")
    with pytest.raises(PipelineError, match="pass --data"):
        export(run, tmp_path / "other" / "m.onnx", "onnx", str(SHARED_WEIGHTS), data_dir=tmp_path / "gone")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["labels.txt", "notes", "todo.txt"]


@needs_shared
def test_bfloat16_runs_export_to_tensorflow_only_and_float16_features_widen_the_tolerance(setup, tmp_path):
    run = Path(shutil.copytree(setup["runs"]["logreg"], tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    config["features"].update(precision="bfloat16", store_dtype="float16")
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(PipelineError, match="cannot run this run's --precision bfloat16 base; export it as keras"):
        export(run, tmp_path / "m.onnx", "onnx")
    assert tolerance(FORMATS["onnx"], open_run(run)) == 1e-2 and tolerance(FORMATS["tflite-int8"], open_run(run)) is None
    assert tolerance(FORMATS["onnx"], open_run(setup["runs"]["logreg"])) == 1e-4


@needs_shared
def test_text_table(setup):
    table = export_table(setup["reports"]["tflite-int8"]).splitlines()
    assert table[0].startswith(str(setup["out"] / "model-int8.tflite")) and "uint8 RGB 0..255" in table[0]
    assert table[1].split()[:3] == ["format", "runtime", "checked"] and "top-1 >= 90%" in table[2]
    assert table[2].split()[:4] == ["tflite-int8", "litert", "20", "val"]


def test_stratified_samples_span_the_classes():
    labels = ["a"] * 90 + ["b"] * 10  # sorted, as folders are
    pick = stratified(labels, 20)
    assert len(pick) == len(set(pick)) == 20 and sum(labels[i] == "b" for i in pick) == 10
    assert stratified(labels, 20) == pick and len(stratified(labels, 500)) == 100


def test_judge_refuses_a_broken_int8_file_and_nan():
    expected = np.tile([[0.9, 0.1], [0.2, 0.8]], (10, 1))
    with pytest.raises(PipelineError, match="agrees with predict on 50.0% of 20 images, under the 90% floor"):
        judge(FORMATS["tflite-int8"], expected, np.full_like(expected, 0.5) + [0.01, 0], None)
    with pytest.raises(PipelineError, match="differs from predict by nan"):
        judge(FORMATS["onnx"], expected, expected * np.nan, 1e-4)


def test_replacing_folder_is_whole_or_absent(tmp_path):
    target = tmp_path / "saved"
    with replacing_folder(target, MARKER) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), replacing_folder(target, MARKER) as tmp:
        (tmp / "b").write_text("2")
        raise RuntimeError("conversion failed")
    assert [p.name for p in tmp_path.iterdir()] == ["saved"] and sorted(p.name for p in target.iterdir()) == [MARKER, "a"]


@needs_shared
def test_the_deploy_draft_line_decodes_as_predict():
    photo = max((SHARED_DATA / "hymenoptera" / "val" / "ants").iterdir(), key=lambda f: f.stat().st_size)
    with Image.open(photo) as image:
        assert min(image.size) >= 4 * SIZE  # large enough for a reduced DCT scale
        image.draft("RGB", (SIZE, SIZE))
        pixels = np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.BILINEAR))
    assert np.array_equal(pixels, load_image(str(photo), SIZE)[0])


@needs_shared
@pytest.mark.parametrize("name", list(NAMES))
def test_deploy_snippet_classifies_a_photo_with_the_runtime_alone(setup, tmp_path, monkeypatch, name):
    code = deploy_snippets()[name]
    assert "pipeline" not in code
    model = re.search(r'"(model\.\w+|saved_model)"', code).group(1)
    src = setup["out"] / NAMES[name]
    (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / model)
    shutil.copy(setup["out"] / "labels.txt", tmp_path / "labels.txt")
    shutil.copy(setup["photo"], tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, f"docs/deploy.md {name} snippet", "exec"), {"__name__": "__main__"})
    label, p = printed.getvalue().split()
    probs = FORMATS[name].load(src)(load_image(str(tmp_path / "photo.jpg"), SIZE)[0][None].astype(np.float32))[0]
    assert label == ["ants", "bees"][probs.argmax()] and float(p) == pytest.approx(probs.max(), abs=1e-4)
    if FORMATS[name].tolerance is not None:
        r = setup["photo_predicted"]
        assert r["label"] == label and r["probabilities"][label] == pytest.approx(float(p), abs=1e-4 + FORMATS[name].tolerance)

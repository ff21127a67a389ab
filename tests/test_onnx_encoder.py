"""Bring your own encoder: ``--backbone PATH.onnx`` with a JSON beside it."""

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper, save

from pipeline import backbones, extract, load
from pipeline.errors import PipelineError
from pipeline.images import decode_all
from helpers import SHARED_WEIGHTS, needs_shared

KERNEL = np.random.default_rng(1).normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32)


def conv_encoder(path, size=16, flatten=False, nan=False):
    """A tiny NCHW encoder (one 3x3 convolution, stride 2): maps ``(N, 4, h, w)``, or ``(N, 4*h*w)`` vectors."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["maps"], strides=[2, 2])]
    out = "maps"
    if flatten:
        nodes.append(helper.make_node("Flatten", ["maps"], ["vectors"]))
        out = "vectors"
    if nan:
        nodes.append(helper.make_node("Log", [out], ["logs"]))  # negative features become NaN
        out = "logs"
    graph = helper.make_graph(nodes, "encoder", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                               ["n", 3, size, size])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(KERNEL, "w")])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


SETTINGS = {"input_size": 16, "layout": "NCHW", "channels": "BGR", "scale": 255,
            "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}


@pytest.fixture
def encoder(tmp_path):
    path = conv_encoder(tmp_path / "enc" / "conv.onnx") if (tmp_path / "enc").mkdir() is None else None
    (tmp_path / "enc" / "conv.json").write_text(json.dumps(SETTINGS))
    return path


def expected_maps(pixels):
    """The convolution in numpy on pixels preprocessed as SETTINGS say: (N, h, w, 4)."""
    x = (pixels.astype(np.float32) / 255 - SETTINGS["mean"]) / SETTINGS["std"]
    x = x[..., ::-1]
    patches = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))[:, ::2, ::2]  # (N, h, w, 3, 3, 3)
    return np.einsum("nhwcij,ocij->nhwo", patches, KERNEL)


@pytest.mark.parametrize("pooling", ["avg", "max", "none"])
def test_features_follow_the_json(encoder, tiny_data, tmp_path, pooling):
    s = extract(tiny_data, backbone=str(encoder), pooling=pooling, cache_dir=str(tmp_path / "cache"))
    assert s["runtime"] == "onnx" and s["splits"]["train"] == 12
    X, _, _ = load(s["cache"], "train")
    pixels = decode_all(sorted(str(p) for p in (tiny_data / "train").rglob("*.png")), 16)[0]
    maps = expected_maps(pixels)
    want = {"avg": maps.mean(axis=(1, 2)), "max": maps.max(axis=(1, 2)), "none": maps}[pooling]
    assert X.shape == want.shape
    assert np.allclose(np.sort(X.reshape(len(X), -1), axis=0), np.sort(want.reshape(len(want), -1), axis=0), atol=1e-4)


def test_name_is_keyed_by_file_and_settings(encoder):
    first = backbones.get(str(encoder))
    assert first.name.startswith("onnx-") and first.default_size == 16
    encoder.with_suffix(".json").write_text(json.dumps({**SETTINGS, "channels": "RGB"}))
    assert backbones.get(str(encoder)).name != first.name


def test_pooled_vectors_refuse_other_poolings(tmp_path, tiny_data):
    path = conv_encoder(tmp_path / "flat.onnx", flatten=True)
    path.with_suffix(".json").write_text(json.dumps(SETTINGS))
    s = extract(tiny_data, backbone=str(path), cache_dir=str(tmp_path / "cache"))
    assert load(s["cache"], "train")[0].shape == (12, 4 * 7 * 7)
    with pytest.raises(PipelineError, match="gives pooled vectors"):
        extract(tiny_data, backbone=str(path), pooling="max", cache_dir=str(tmp_path / "cache"))


def test_values_that_are_not_finite_are_refused(tmp_path, tiny_data):
    path = conv_encoder(tmp_path / "nan.onnx", nan=True)
    path.with_suffix(".json").write_text(json.dumps(SETTINGS))
    with pytest.raises(PipelineError, match="not finite"):
        extract(tiny_data, backbone=str(path), cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("settings, message", [
    (None, "needs a JSON beside it"),
    ({"input_size": 16, "colour": "RGB"}, "unknown keys"),
    ({"layout": "NCHW"}, "input_size must be"),
    ({"input_size": 16, "mean": [0, 0]}, "mean must be a list of 3"),
    ({"input_size": 16, "std": [1, 0, 1]}, "must be positive"),
    ({**SETTINGS, "input_size": 32}, "its JSON says NCHW at 32 px"),
])
def test_bad_settings_are_refused(tmp_path, tiny_data, settings, message):
    path = conv_encoder(tmp_path / "enc.onnx")
    if settings is not None:
        path.with_suffix(".json").write_text(json.dumps(settings))
    with pytest.raises(PipelineError, match=message):
        extract(tiny_data, backbone=str(path), cache_dir=str(tmp_path / "cache"))


@pytest.mark.parametrize("options, message", [
    ({"runtime": "tensorflow"}, "runs on ONNX Runtime in float32 only"),
    ({"weights": "none"}, "no random-weights version"),
    ({"image_size": 32}, "outside onnx-"),
])
def test_what_an_onnx_encoder_cannot_do(encoder, tiny_data, tmp_path, options, message):
    with pytest.raises(PipelineError, match=message):
        extract(tiny_data, backbone=str(encoder), cache_dir=str(tmp_path / "cache"), **options)


def test_train_predict_and_export(encoder, tiny_data, tmp_path):
    from pipeline import export, predict, train

    s = extract(tiny_data, backbone=str(encoder), cache_dir=str(tmp_path / "cache"))
    run = train(s["cache"], head="logreg", runs_root=str(tmp_path / "runs"))["run_dir"]
    results = predict(run, [tiny_data / "test"])
    assert [r["label"] for r in results] == ["blue", "blue", "red", "red"]
    out = export(run, tmp_path / "model.onnx", "onnx")
    assert out["check"]["top1_agreement"] == 1.0 and out["input_shape"] == [16, 16, 3]
    with pytest.raises(PipelineError, match="--format keras cannot hold onnx-.*export this run with --format onnx"):
        export(run, tmp_path / "model.keras", "keras")


def test_predict_refuses_a_changed_file(encoder, tiny_data, tmp_path):
    from pipeline import predict, train

    s = extract(tiny_data, backbone=str(encoder), cache_dir=str(tmp_path / "cache"))
    run = train(s["cache"], head="logreg", runs_root=str(tmp_path / "runs"))["run_dir"]
    conv_encoder(encoder, flatten=True)
    with pytest.raises(PipelineError, match="or its JSON changed since the features were made"):
        predict(run, [tiny_data / "test"], cache_dir=tmp_path / "other")


@needs_shared
def test_mobilenet_v2_brought_back_as_onnx_matches_the_registry_one(tiny_data, tmp_path):
    """The project's own MobileNetV2 (base + average pooling, no preprocessing) written as a plain ONNX encoder
    gives the registry backbone's features and predictions."""
    from pipeline import predict, train
    from pipeline.deploy.converting import to_onnx
    from pipeline.parity import FEATURES, relative_diff

    spec = backbones.get("mobilenet_v2")
    weights = backbones.resolve_weights(spec, 96, "imagenet", str(SHARED_WEIGHTS))
    path = to_onnx(backbones.build(spec, 96, "avg", weights), tmp_path / "mnv2.onnx", optimize=False)
    path.with_suffix(".json").write_text(json.dumps({"input_size": 96, "mean": [127.5] * 3, "std": [127.5] * 3}))

    common = dict(image_size=96, weights_dir=str(SHARED_WEIGHTS), cache_dir=str(tmp_path / "cache"))
    ours = extract(tiny_data, backbone="mobilenet_v2", runtime="tensorflow", **common)
    theirs = extract(tiny_data, backbone=str(path), **common)
    for split in ("train", "val", "test"):
        assert relative_diff(load(ours["cache"], split)[0], load(theirs["cache"], split)[0]) <= FEATURES
    runs = [train(s["cache"], head="logreg", runs_root=str(tmp_path / "runs"))["run_dir"] for s in (ours, theirs)]
    labels = [[r["label"] for r in predict(run, [tiny_data / "val", tiny_data / "test"], str(SHARED_WEIGHTS),
                                            runtime="tensorflow" if run == runs[0] else "auto")]  # ours as extracted
              for run in runs]
    assert labels[0] == labels[1] and len(labels[0]) == 10


def test_cli_extracts_with_an_onnx_file_and_refuses_tensorflow(encoder, tiny_data, tmp_path):
    from click.testing import CliRunner

    from pipeline.cli import main

    args = ["extract", str(tiny_data), "--backbone", str(encoder), "--cache-dir", str(tmp_path / "cache"), "--json"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and json.loads(r.output)["runtime"] == "onnx"
    r = CliRunner().invoke(main, args + ["--runtime", "tensorflow", "--cache-dir", str(tmp_path / "other")])
    assert r.exit_code != 0 and "runs on ONNX Runtime in float32 only" in r.output

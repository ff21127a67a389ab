"""KerasHub encoders (DINOv2, SigLIP 2, CLIP): the registry's entries, shrunk to a few small layers with random
weights, saved as a preset folder (what --weights DIR loads), through extract, train, predict and export."""

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("keras_hub")

from pipeline import backbones, export, extract, load, predict, train  # noqa: E402
from pipeline.errors import PipelineError  # noqa: E402
from helpers import DENSE_FAST  # noqa: E402
from pipeline.parity import FEATURES, relative_diff  # noqa: E402

pytestmark = pytest.mark.slow  # together a minute or more: started first (conftest.py)

TINY = dict(num_layers=2, hidden_dim=32, num_heads=2, intermediate_dim=64)
SIZE = {"dinov2_small": 28, "siglip2_base_patch16_224": 32, "clip_vit_base_patch16": 32}
WIDTH = {"dinov2_small": 64, "siglip2_base_patch16_224": 32, "clip_vit_base_patch16": 32}  # DINOv2: CLS + mean


@pytest.fixture(params=list(SIZE))
def tiny_encoder(request, monkeypatch, tmp_path):
    """``(name, preset folder)``: the entry with small sizes registered as ``<name>_tiny``."""
    import keras_hub

    entry = backbones.get(request.param)
    tiny = replace(entry, name=f"{entry.name}_tiny", kwargs={**entry.kwargs, **TINY})
    monkeypatch.setitem(backbones.REGISTRY, tiny.name, tiny)
    size = SIZE[request.param]
    model = getattr(keras_hub.models, tiny.constructor)(**tiny.kwargs, image_shape=(size, size, 3))
    folder = tmp_path / "preset"
    model.save_to_preset(str(folder))
    return tiny.name, folder, request.param


def test_extract_on_both_runtimes_train_predict_export(tiny_encoder, tiny_data, tmp_path):
    name, folder, entry = tiny_encoder
    common = dict(backbone=name, image_size=SIZE[entry], weights=str(folder), cache_dir=str(tmp_path / "cache"))
    onnx = extract(tiny_data, runtime="onnx", **common)
    assert onnx["runtime"] == "onnx" and not onnx["notes"]
    tf_cache = extract(tiny_data, runtime="tensorflow", **{**common, "cache_dir": str(tmp_path / "tf")})
    X_onnx, X_tf = load(onnx["cache"], "train")[0], load(tf_cache["cache"], "train")[0]
    assert X_tf.shape == (12, WIDTH[entry]) and np.isfinite(X_tf).all()
    assert relative_diff(X_tf, X_onnx) <= FEATURES

    run = train(onnx["cache"], head="logreg", runs_root=str(tmp_path / "runs"))["run_dir"]
    labels = [r["label"] for r in predict(run, [tiny_data / "test"])]
    assert len(labels) == 4 and set(labels) <= {"blue", "red"}
    for fmt, suffix in [("keras", ".keras"), ("onnx", ".onnx"), ("tflite", ".tflite")]:
        out = export(run, tmp_path / f"model{suffix}", fmt)
        assert out["check"]["top1_agreement"] == 1.0, fmt


def test_patch_grid_and_pooling(tiny_encoder, tiny_data, tmp_path):
    name, folder, entry = tiny_encoder
    s = extract(tiny_data, backbone=name, image_size=SIZE[entry], weights="none", pooling="none",
                runtime="tensorflow", cache_dir=str(tmp_path / "cache"))
    grid = SIZE[entry] // backbones.get(name).kwargs["patch_size"]
    assert load(s["cache"], "train")[0].shape == (12, grid, grid, 32)
    with pytest.raises(PipelineError, match="no max pooling"):
        backbones.build(backbones.get(name), SIZE[entry], "max", backbones.Weights("none", None, "none"))


@pytest.mark.parametrize("name", list(SIZE) + ["dinov2_base"])
def test_registry_records_preset_and_preprocessing(name):
    entry = backbones.get(name)
    assert entry.library == "keras_hub" and entry.weights_url == name and entry.default_size == 224
    assert len(entry.mean) == 3 and len(entry.std) == 3 and entry.token_pooling
    with pytest.raises(PipelineError, match="multiple of"):
        backbones.check_size(entry, entry.size_step * 2 + 1)


def test_finetune_opens_the_last_blocks(monkeypatch, tmp_path, tiny_data):
    """CLIP's blocks are layers of the base: --unfreeze 3 opens the pooling layers, the final norm and one block."""
    import keras_hub

    from pipeline import finetune

    entry = backbones.get("clip_vit_base_patch16")
    tiny = replace(entry, name="clip_tiny", kwargs={**entry.kwargs, **TINY})
    monkeypatch.setitem(backbones.REGISTRY, tiny.name, tiny)
    keras_hub.models.CLIPVisionEncoder(**tiny.kwargs, image_shape=(32, 32, 3)).save_to_preset(str(tmp_path / "p"))
    s = extract(tiny_data, backbone=tiny.name, image_size=32, weights=str(tmp_path / "p"), runtime="tensorflow",
                cache_dir=str(tmp_path / "cache"))
    run = train(s["cache"], head="dense", options=DENSE_FAST, runs_root=str(tmp_path / "runs"))["run_dir"]
    r = finetune(run, unfreeze_top=4, epochs=1, out_dir=tmp_path / "ft")
    assert r["first_unfrozen"].endswith("encoder_block_1") and r["epochs_trained"] == 1
    assert r["trainable_params"] > 0


def test_pretrained_weights_come_from_a_preset_folder(tmp_path):
    entry = backbones.get("dinov2_small")
    folder = tmp_path / "weights" / "dinov2_small"
    folder.mkdir(parents=True)
    (folder / "model.weights.h5").write_bytes(b"not really weights")
    found = backbones.resolve_weights(entry, 224, "pretrained", str(tmp_path / "weights"))
    assert found.spec == "imagenet" and found.path == str(folder.resolve()) and len(found.sha256) == 64
    with pytest.raises(PipelineError, match="not a KerasHub preset folder"):
        backbones.resolve_weights(entry, 224, str(tmp_path))

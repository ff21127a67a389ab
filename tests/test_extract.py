"""Stage one mechanics on synthetic folders with a tiny random-weights backbone."""

import sys

import h5py
import numpy as np

from pipeline import extract, load
from pipeline.store import FeatureFile
from helpers import make_image


def test_layout_rows_and_labels(tiny_data, fast_args):
    s = extract(tiny_data, **fast_args)
    assert s["splits"] == {"train": 12, "val": 6, "test": 4}
    assert s["computed"] == 22 and s["reused"] == 0 and s["skipped"] == []
    timings = s["timings"]
    assert set(timings) == {"hash", "convert", "model", "compute", "decode", "infer", "write", "commit"}
    assert timings["decode"] + timings["infer"] + timings["write"] <= timings["compute"] + 0.003  # rounded
    assert timings["infer"] > 0
    assert s["images_per_second"] > 0
    with h5py.File(s["cache"], "r") as f:  # plain h5py reads it
        assert list(f["classes"].asstr()[()]) == ["blue", "red"]
        for key in ("format_version", "backbone", "weights", "weights_sha256", "input_size", "pooling",
                    "preprocess", "precision", "augment", "keras_version", "tensorflow_version", "created"):
            assert key in f.attrs
        assert f.attrs["runtimes"] == "tensorflow" == s["runtime"]  # auto keeps VGG16 on TensorFlow
        assert f["train/features"].shape == (12, 512) and f["train/features"].chunks is not None
        paths = f["train/paths"].asstr()[()]
        labels = f["train/labels"][()]
        assert all(("/red/" in p) == (lab == 1) for p, lab in zip(paths, labels))
        assert set(f["train/view"][()]) == {0}
        assert len(f["errors/path"]) == 0
    X, y, classes = load(s["cache"], "val")
    assert X.shape == (6, 512) and X.dtype == np.float32 and sorted(y) == [0, 0, 0, 1, 1, 1]


def test_unchanged_rerun_computes_nothing_and_skips_tensorflow(tiny_data, fast_args, tmp_path):
    extract(tiny_data, **fast_args)
    code = (f"import sys, json; from pipeline import extract; s = extract({str(tiny_data)!r}, **{fast_args!r});"
            "print(json.dumps([s['computed'], s['reused'], 'tensorflow' in sys.modules]))")
    import subprocess
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[0, 22, false]"


def test_added_edited_removed_renamed(tiny_data, fast_args):
    first = extract(tiny_data, **fast_args)
    before = {p: x for p, x in zip(FeatureFile(first["cache"]).column("train", "paths"), load(first["cache"])[0])}
    make_image(tiny_data / "train" / "red" / "new.png", (210, 40, 40), 999)           # added
    make_image(tiny_data / "train" / "blue" / "blue0.png", (10, 10, 250), 1000)       # edited
    (tiny_data / "train" / "red" / "red1.png").unlink()                                # removed
    (tiny_data / "train" / "red" / "red2.png").rename(tiny_data / "train" / "red" / "renamed.png")
    s = extract(tiny_data, **fast_args)
    assert s["computed"] == 2 and s["removed"] == 2 and s["splits"]["train"] == 12
    with FeatureFile(s["cache"]) as f:
        paths = list(f.column("train", "paths"))
        X = f.features("train")[()]
    assert "train/red/red1.png" not in paths and "train/red/renamed.png" in paths
    np.testing.assert_allclose(X[paths.index("train/red/renamed.png")], before["train/red/red2.png"], atol=1e-6)


def test_different_config_goes_to_a_different_file(tiny_data, fast_args):
    a = extract(tiny_data, **fast_args)
    b = extract(tiny_data, **{**fast_args, "pooling": "none"})
    c = extract(tiny_data, **{**fast_args, "preprocess": "rescale"})
    assert len({a["cache"], b["cache"], c["cache"]}) == 3
    assert b["computed"] == 22 and c["computed"] == 22
    assert load(b["cache"])[0].shape[1:] == (1, 1, 512)


def test_changed_weights_file_never_reuses(tiny_data, fast_args, tmp_path):
    import keras

    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    wpath = tmp_path / "w.weights.h5"
    model.save_weights(str(tmp_path / "w1.weights.h5"))
    import shutil
    shutil.copy(tmp_path / "w1.weights.h5", wpath)
    args = {**fast_args, "weights": str(wpath)}
    a = extract(tiny_data, **args)
    model2 = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    model2.save_weights(str(wpath))
    b = extract(tiny_data, **args)
    assert b["computed"] == 22
    assert a["cache"] != b["cache"]  # the weights' sha256 names the file


def test_unreadable_file_is_skipped_with_reason(tiny_data, fast_args):
    (tiny_data / "train" / "red" / "broken.jpg").write_bytes(b"<html>not a photo</html>")
    (tiny_data / "train" / "red" / "empty.png").write_bytes(b"")
    s = extract(tiny_data, **fast_args)
    reasons = {x["path"]: x["reason"] for x in s["skipped"]}
    assert set(reasons) == {"train/red/broken.jpg", "train/red/empty.png"}
    assert all(reasons.values())
    assert s["splits"]["train"] == 12
    with FeatureFile(s["cache"]) as f:
        assert {e["path"] for e in f.errors()} == set(reasons)
    again = extract(tiny_data, **fast_args)  # known failures are not retried: nothing to compute
    assert again["computed"] == 0 and {x["path"] for x in again["skipped"]} == set(reasons)


def test_vgg16_raw_maps_shape(tmp_path, fast_args):
    from helpers import make_folder
    root = make_folder(tmp_path / "v", {"train": 1})
    s = extract(root, **{**fast_args, "backbone": "vgg16", "image_size": 150, "pooling": "none", "batch_size": 2})
    assert load(s["cache"])[0].shape == (2, 4, 4, 512)


def test_progress_moves_one_bar_per_split(tiny_data, fast_args):
    seen: dict[str, list[int]] = {}

    def progress(split, total):
        seen[split] = [total, 0]
        return lambda n: seen[split].__setitem__(1, seen[split][1] + n)

    extract(tiny_data, progress=progress, **fast_args)
    assert seen == {"train": [12, 12], "val": [6, 6], "test": [4, 4]}


def test_a_broken_file_is_reported_once_with_augmented_views(tiny_data, fast_args):
    (tiny_data / "train" / "red" / "broken.jpg").write_bytes(b"<html>not a photo</html>")
    s = extract(tiny_data, augment=2, augment_policy="flip", **fast_args)
    assert [x["path"] for x in s["skipped"]] == ["train/red/broken.jpg"]
    assert s["splits"]["train"] == 12 * 3

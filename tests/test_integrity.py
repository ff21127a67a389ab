"""Trust: edited photos and changed weights are recomputed, and nothing read from a cache or a run
directory can run code (crafted files are refused with a clear error)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from helpers import copied
from pipeline import backbones, extract, store
from pipeline.cli import main
from pipeline.config import FeatureConfig
from pipeline.errors import PipelineError
from pipeline.hashing import file_sha256
from pipeline.store import FeatureFile

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"


def _rows(cache: str) -> dict[str, tuple[str, np.ndarray]]:
    with FeatureFile(cache) as f:
        return {p: (s, x) for p, s, x in zip(f.column("train", "paths"), f.column("train", "sha256"),
                                                f.features("train")[()])}


def test_reencoding_three_photos_recomputes_exactly_those(tiny_data, fast_args):
    before = _rows(extract(tiny_data, **fast_args)["cache"])
    edited = ["train/blue/blue0.png", "train/blue/blue3.png", "train/red/red5.png"]
    for rel in edited:  # same pixels, different bytes
        with Image.open(tiny_data / rel) as im:
            im.load()
        im.save(tiny_data / rel, compress_level=1)
    s = extract(tiny_data, **fast_args)
    assert s["computed"] == 3 and s["reused"] == 19
    after = _rows(s["cache"])
    for path, (sha, x) in after.items():
        if path in edited:
            assert sha != before[path][0]
            np.testing.assert_allclose(x, before[path][1], atol=1e-5)  # same pixels, same features
        else:
            assert sha == before[path][0] and np.array_equal(x, before[path][1])


def test_a_changed_weights_file_never_reuses_old_features(tiny_data, fast_args, tmp_path):
    import keras

    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    target = weights_dir / backbones.get("mobilenet_025").fallback_filename()  # what 32 px looks for
    model = keras.applications.MobileNet(include_top=False, weights=None, alpha=0.25, input_shape=(224, 224, 3))
    model.save(target)
    args = {**fast_args, "backbone": "mobilenet_025", "weights": "imagenet", "weights_dir": str(weights_dir)}
    first = extract(tiny_data, **args)
    old = _rows(first["cache"])
    model.set_weights([w * 1.5 for w in model.get_weights()])
    model.save(target)  # same name, same place, other bytes
    second = extract(tiny_data, **args)
    assert second["cache"] == first["cache"]
    assert second["computed"] == 22 and second["reused"] == 0
    assert any("weights_sha256" in n for n in second["notes"])
    new = _rows(second["cache"])
    assert not np.allclose([new[p][1] for p in old], [old[p][1] for p in old], rtol=1e-3, atol=0)  # new features
    with FeatureFile(second["cache"]) as f:
        assert f.config["weights_sha256"] == file_sha256(target)


def test_parts_of_an_interrupted_run_are_keyed_by_the_weights():
    config = FeatureConfig("mobilenet_v2", "imagenet", "a" * 64, 160)
    path = Path("cache/x/mobilenet_v2-160-avg.h5")
    other = store.FeatureCache(path, replace(config, weights_sha256="b" * 64))
    assert store.FeatureCache(path, config).parts.dir != other.parts.dir


# A classic pickle that runs a shell command when unpickled; written as bytes, never loaded here.
def _payload(marker: Path) -> bytes:
    return f"cposix\nsystem\n(S'touch {marker}'\ntR.".encode()


def _craft(good: str, dest: Path, how: str, marker: Path) -> Path:
    shutil.copy(good, dest)
    with h5py.File(dest, "a") as f:
        if how == "pickle-in-features":
            del f["train/features"]
            f["train/features"] = np.array([np.void(_payload(marker))] * f["train/labels"].shape[0])
        elif how == "object-references":
            del f["train/labels"]
            f.create_dataset("train/labels", data=[f.ref] * f["train/paths"].shape[0], dtype=h5py.ref_dtype)
        elif how == "external-link":
            del f["val"]
            f["val"] = h5py.ExternalLink("/etc/passwd", "/")
        elif how == "external-storage":
            shape = f["train/features"].shape
            del f["train/features"]
            f.create_dataset("train/features", shape=shape, dtype="f4", external=[("/etc/hostname", 0, h5py.h5f.UNLIMITED)])
        elif how == "newer-format":
            f.attrs["format_version"] = 99
        elif how == "labels-out-of-range":
            f["train/labels"][0] = 7
        elif how == "columns-disagree":
            del f["train/paths"]
            f["train/paths"] = np.array(["a.png"], dtype=object).astype(store.STR)
        elif how == "not-a-feature-file":
            for key in list(f):
                del f[key]
    return dest


CRAFTED = ["pickle-in-features", "object-references", "external-link", "external-storage", "newer-format",
           "labels-out-of-range", "columns-disagree", "not-a-feature-file"]


@pytest.mark.parametrize("how", CRAFTED)
def test_a_crafted_feature_file_is_refused_in_one_line(tiny_data, fast_args, tmp_path, how):
    good = extract(tiny_data, **fast_args)["cache"]
    marker = tmp_path / "code-ran"
    bad = _craft(good, tmp_path / f"{how}.h5", how, marker)
    with pytest.raises(PipelineError, match="not a usable feature file"):
        FeatureFile(bad)
    r = CliRunner().invoke(main, ["info", str(bad)])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert not marker.exists()


def test_extract_rebuilds_over_a_crafted_file(tiny_data, fast_args, tmp_path):
    good = extract(tiny_data, **fast_args)["cache"]
    _craft(good, tmp_path / "tmp.h5", "pickle-in-features", tmp_path / "code-ran")
    shutil.move(tmp_path / "tmp.h5", good)
    s = extract(tiny_data, **fast_args)
    assert s["computed"] == 22 and any("ignoring unreadable" in n for n in s["notes"])
    with FeatureFile(good) as f:
        assert len(f.column("train", "labels")) == 12


def test_no_code_loads_pickles_or_unsafe_keras():
    banned = ("import pickle", "cloudpickle", "joblib.load", "allow_pickle=True", "safe_mode=False", "dill")
    for source in PIPELINE.rglob("*.py"):
        text = source.read_text()
        assert not [b for b in banned if b in text], source


@pytest.fixture
def trained(tiny_runs, tmp_path):
    """The session's tiny VGG16 features and a copy of its logreg run (the tests change it)."""
    return tiny_runs["cache"], copied(tiny_runs["runs"]["logreg"], tmp_path / "run")


def test_a_run_refuses_features_from_another_backbone(trained, tiny_data, fast_args):
    from pipeline.training import evaluate_run

    cache, run_dir = trained
    assert evaluate_run(run_dir, cache)["train"]["accuracy"] >= 0.5
    other = extract(tiny_data, **{**fast_args, "backbone": "mobilenet_050", "runtime": "tensorflow"})["cache"]
    with pytest.raises(PipelineError, match="backbone 'mobilenet_050' vs 'vgg16'"):
        evaluate_run(run_dir, other)


def test_a_crafted_run_directory_is_refused(trained):
    import keras

    from pipeline.runs import open_run

    _, run_dir = trained
    np.savez(run_dir / "head.npz", coef=np.array([{"not": "numbers"}], dtype=object))  # needs unpickling
    with pytest.raises(PipelineError, match="allow_pickle"):
        open_run(run_dir).head()

    (run_dir / "head.npz").unlink()  # a crafted dense run of a release before head.npz: head.keras alone
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "head": "dense", "params": {}}))
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)  # a Lambda is stored as Python bytecode
    keras.Model(inputs, outputs).save(run_dir / "head.keras")
    with pytest.raises(PipelineError, match="safe_mode"):
        open_run(run_dir).head()

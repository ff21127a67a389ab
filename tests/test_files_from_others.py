"""Files and folders from someone else: leaks are refused or confined, crafted files get a one-line refusal
naming the file and the field (exit 2), results are right or refused, and writes that replace a file are whole."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from helpers import SHARED_WEIGHTS, make_folder, make_image, needs_shared, refused
from pipeline import extract, predict, train, write_report
from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.runs import new_run_dir, open_run
from pipeline.store import FeatureFile

SECRET = b"PRIVATE KEY 0123456789 do not mail"


def cli(args: list[str]):
    return CliRunner().invoke(main, args)


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict:
    """A feature file and a logreg run of a small synthetic folder (VGG16, random weights, 32 px)."""
    root = tmp_path_factory.mktemp("others")
    data = make_folder(root / "data", {"train": 5, "val": 3})
    args = dict(backbone="vgg16", image_size=32, weights="none", batch_size=8, cache_dir=str(root / "cache"))
    cache = extract(data, **args)["cache"]
    run = train(cache, "logreg", runs_root=root / "runs")["run_dir"]
    return {"root": root, "data": data, "cache": cache, "run": run, "args": args}


def crafted(made: dict, tmp_path: Path, edit) -> str:
    """A copy of the feature file changed by ``edit(h5py.File)``."""
    path = tmp_path / "crafted.h5"
    shutil.copy(made["cache"], path)
    with h5py.File(path, "a") as f:
        edit(f)
    return str(path)


def copied_run(made: dict, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(made["run"], run)
    return run


# ---------------------------------------------------------------- leaks and injection


def test_report_embeds_only_real_png_files_of_the_run(made, tmp_path):
    secret = tmp_path / "id_rsa"
    secret.write_bytes(SECRET)
    run = copied_run(made, tmp_path)
    (run / "confusion.png").unlink()
    (run / "confusion.png").symlink_to(secret)  # a link out of the run directory
    (run / "curves.png").write_bytes(SECRET)  # a regular file that is not a PNG
    page = Path(write_report([run], tmp_path / "r.html")["report"]).read_text()
    assert base64.b64encode(SECRET)[:24].decode() not in page and "PRIVATE" not in page


def test_a_script_in_a_recorded_setting_never_reaches_the_report(made, tmp_path):
    run = copied_run(made, tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["features"]["input_size"] = "<script>alert(1)</script>"
    (run / "config.json").write_text(json.dumps(config))
    refused(cli(["report", str(run), "--output", str(tmp_path / "r.html")]), "config.json", "input_size")
    assert not (tmp_path / "r.html").exists()


def test_a_script_in_a_feature_file_attribute_is_refused(made, tmp_path):
    def edit(f):
        f.attrs["input_size"] = "<script>alert(1)</script>"

    refused(cli(["train", crafted(made, tmp_path, edit)]), "input_size")


@pytest.mark.parametrize("path", ["../outside.png", "/etc/hostname", "train/../../x.png", "train/./a.png"])
def test_paths_leaving_the_dataset_root_are_refused(made, tmp_path, path):
    def edit(f):
        paths = f["train/paths"][()].astype(object)
        paths[0] = path
        del f["train/paths"]
        f["train/paths"] = paths.astype(h5py.string_dtype())

    error = refused(cli(["audit", crafted(made, tmp_path, edit), "--output", str(tmp_path / "sheets")]),
                    "/train/paths")
    assert "dataset root" in error and not (tmp_path / "sheets").exists()


def test_a_predictions_csv_leaving_the_root_is_refused_by_the_report(made, tmp_path):
    run = copied_run(made, tmp_path)
    csv = run / "predictions-val.csv"
    lines = csv.read_text().splitlines()
    lines[1] = "../../secret.png," + lines[1].split(",", 1)[1]
    csv.write_text("\n".join(lines) + "\n")
    refused(cli(["report", str(run), "--output", str(tmp_path / "r.html")]), "predictions-val.csv", "line 2")


def test_a_pipe_named_like_a_photo_is_never_opened(tmp_path):
    from pipeline.audit.sheets import thumbnail
    from pipeline.images import load_image

    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    start = time.monotonic()
    assert load_image(str(fifo), 32) == (None, "not a regular file (a pipe, socket or device)")
    assert thumbnail(fifo).size == (192, 192)  # a placeholder, at once
    assert time.monotonic() - start < 5


def test_virtual_datasets_are_refused(made, tmp_path):
    def edit(f):
        shape = f["train/features"].shape
        layout = h5py.VirtualLayout(shape=shape, dtype="float32")
        layout[:] = h5py.VirtualSource(str(tmp_path / "elsewhere.h5"), "x", shape=shape)
        del f["train/features"]
        f.create_virtual_dataset("train/features", layout, fillvalue=0)

    refused(cli(["info", crafted(made, tmp_path, edit)]), "/train/features")


def test_a_linked_folder_inside_a_class_folder_is_not_followed_unless_asked(tmp_path):
    elsewhere = make_folder(tmp_path / "elsewhere", {"": 3})
    data = make_folder(tmp_path / "data", {"train": 3})
    (data / "train" / "blue" / "more").symlink_to(elsewhere / "red", target_is_directory=True)
    make_image(tmp_path / "linked.png", (40, 60, 200), 99)
    (data / "train" / "blue" / "linked.png").symlink_to(tmp_path / "linked.png")  # linked files are read
    args = dict(backbone="vgg16", image_size=32, weights="none", cache_dir=str(tmp_path / "cache"))
    s = extract(data, **args)
    assert s["splits"] == {"train": 7}
    assert any("train/blue/more" in w and "--follow-links" in w for w in s["warnings"])
    assert extract(data, **args, follow_links=True)["splits"] == {"train": 10}


def test_names_reach_the_terminal_as_printable_text(tmp_path):
    data = make_folder(tmp_path / "data", {"train": 2})
    (data / "train" / "red").rename(data / "train" / "red\x1b[2J")
    (data / "train" / "blue" / "x\nskipped forged: fake.png").write_bytes(b"not an image")
    result = cli(["extract", str(data), "--backbone", "vgg16", "--image-size", "32", "--weights", "none",
                  "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert not any(line.startswith("skipped forged") for line in result.output.splitlines())
    assert "skipped train/blue/x\\nskipped forged: fake.png" in result.output
    shown = cli(["info", result.output.splitlines()[0]])
    assert "\x1b" not in shown.output and "red\\x1b[2J" in shown.output


def test_a_cheap_file_declaring_huge_columns_is_refused_unread(made, tmp_path):
    def edit(f):
        del f["train/labels"]
        f.create_dataset("train/labels", shape=(2**28,), dtype="int32", chunks=(1024,))

    start = time.monotonic()
    refused(cli(["info", crafted(made, tmp_path, edit)]), "/train/labels", "rows")
    assert time.monotonic() - start < 10


# ---------------------------------------------------------------- lost or wrong results


def test_train_never_overwrites_an_existing_run(made, tmp_path):
    run = copied_run(made, tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    refused(cli(["train", made["cache"], "--head", "knn", "--run-dir", str(run)]), "already holds a run")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_run_that_fails_half_way_leaves_no_run_directory(made, tmp_path, monkeypatch):
    from pipeline import plots

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plots, "confusion_png", full_disk)
    with pytest.raises(OSError):
        train(made["cache"], "logreg", run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run.tmp-*"))


def test_a_report_that_fails_to_write_leaves_the_old_one(made, tmp_path, monkeypatch):
    from pipeline import atomic

    out = tmp_path / "report.html"
    out.write_text("the old report")

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", fail)
    with pytest.raises(OSError):
        write_report([made["run"]], out)
    assert out.read_text() == "the old report" and sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


@pytest.mark.parametrize("options", [{"lr": float("nan")}, {"lr": -1.0}, {"lr": float("inf")}])
def test_dense_refuses_a_learning_rate_that_is_not_a_positive_number(made, tmp_path, options):
    with pytest.raises(PipelineError, match="--lr above 0"):
        train(made["cache"], "dense", options, runs_root=tmp_path)


def test_cli_refuses_a_negative_learning_rate(made, tmp_path):
    refused(cli(["train", made["cache"], "--head", "dense", "--lr", "-1", "--runs-root", str(tmp_path)]), "--lr")


def test_class_names_with_dollar_signs_train(tmp_path):
    data = make_folder(tmp_path / "data", {"train": 4, "val": 2}, classes={"cheap_$5_$10": (10, 200, 10),
                                                                           "pricey_$$": (200, 10, 10)})
    cache = extract(data, backbone="vgg16", image_size=32, weights="none", cache_dir=str(tmp_path / "c"))["cache"]
    run = Path(train(cache, "logreg", runs_root=tmp_path / "runs")["run_dir"])
    assert (run / "confusion.png").read_bytes().startswith(b"\x89PNG")


def test_a_disk_without_room_refuses_the_commit_and_keeps_the_old_file(made, tmp_path, monkeypatch):
    from pipeline.store import writing

    data = tmp_path / "data"
    shutil.copytree(made["data"], data)
    args = {**made["args"], "cache_dir": str(tmp_path / "cache")}
    first = extract(data, **args)
    before = Path(first["cache"]).read_bytes()
    make_image(data / "train" / "red" / "new.png", (200, 50, 40), 123)
    monkeypatch.setattr(writing.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 1000))
    with pytest.raises(PipelineError, match="not enough disk space"):
        extract(data, **args)
    assert Path(first["cache"]).read_bytes() == before
    monkeypatch.undo()

    def fill_up(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writing, "_write_split", fill_up)
    with pytest.raises(PipelineError, match="disk filled up"):
        extract(data, **args)
    assert Path(first["cache"]).read_bytes() == before and not list(Path(first["cache"]).parent.glob("*.tmp-*"))


def test_part_files_are_checked_before_they_are_trusted(made, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(made["data"], data)
    args = {**made["args"], "cache_dir": str(tmp_path / "cache")}
    first = extract(data, **args)
    with FeatureFile(first["cache"]) as f:
        fingerprint_dir = next(Path(first["cache"]).parent.glob("*.parts-*"), None)
        known = f.column("train", "sha256")[0]
        stored = f.features("train")[0]
    assert fingerprint_dir is None  # a commit clears its parts
    from pipeline.config import fingerprint

    with FeatureFile(first["cache"]) as f:
        parts = Path(first["cache"]).with_name(Path(first["cache"]).name + ".parts-" + fingerprint(f.config))
    parts.mkdir()
    with h5py.File(parts / "part-1-wrongwidth.h5", "w") as p:  # rows of another width
        p.attrs["fingerprint"] = parts.name.rsplit("-", 1)[1]
        p["sha256"] = np.array(["a" * 64], dtype=h5py.string_dtype("ascii", 64))
        p["view"] = np.zeros(1, np.int32)
        p["features"] = np.zeros((1, 3), np.float32)
    with h5py.File(parts / "part-2-poison.h5", "w") as p:  # the right width, claiming a stored image
        p.attrs["fingerprint"] = parts.name.rsplit("-", 1)[1]
        p["sha256"] = np.array([known], dtype=h5py.string_dtype("ascii", 64))
        p["view"] = np.zeros(1, np.int32)
        p["features"] = np.full((1, *stored.shape), 99.0, np.float32)
    make_image(data / "train" / "red" / "new.png", (200, 50, 40), 123)
    s = extract(data, **args)
    assert s["computed"] == 1 and any("part-1-wrongwidth.h5" in n for n in s["notes"])
    with FeatureFile(s["cache"]) as f:
        row = list(f.column("train", "sha256")).index(known)
        np.testing.assert_array_equal(f.features("train")[row], stored)  # the published row wins


# ---------------------------------------------------------------- messages


@pytest.mark.parametrize("damage, word", [
    (lambda run: (run / "config.json").write_text('{"head": "logreg", "par'), "config.json"),
    (lambda run: (run / "config.json").write_text("[1, 2]"), "config.json"),
    (lambda run: _edit_config(run, lambda c: c["features"].update(input_size=10**9)), "input_size"),
    (lambda run: _edit_config(run, lambda c: c["features"].update(input_size=-5)), "input_size"),
    (lambda run: _edit_config(run, lambda c: c.pop("classes")), "classes"),
    (lambda run: (run / "head.npz").write_bytes(b"PK\x03\x04 truncated"), "cannot load the fitted logreg head"),
])
def test_a_damaged_run_directory_is_refused_naming_what(made, tmp_path, damage, word):
    run = copied_run(made, tmp_path)
    damage(run)
    refused(cli(["predict", str(run), str(made["data"] / "val")]), word)


def _edit_config(run: Path, change) -> None:
    config = json.loads((run / "config.json").read_text())
    change(config)
    (run / "config.json").write_text(json.dumps(config))


def _replace(name: str, value):
    def edit(f):
        del f[name]
        f[name] = value
    return edit


@pytest.mark.parametrize("edit, field", [
    (_replace("train/labels", np.zeros((10, 2), np.int32)), "/train/labels"),
    (_replace("train/features", np.zeros(10, np.float32)), "/train/features"),
    (_replace("train/view", np.full(10, -1, np.int32)), "/train/view"),
])
def test_a_malformed_feature_file_is_refused_naming_the_field(made, tmp_path, edit, field):
    refused(cli(["info", crafted(made, tmp_path, edit)]), "crafted.h5", field)


def test_nan_features_are_refused_by_stage_two(made, tmp_path):
    def edit(f):
        f["train/features"][0] = np.nan

    refused(cli(["train", crafted(made, tmp_path, edit), "--runs-root", str(tmp_path)]), "/train/features", "NaN")


@pytest.mark.parametrize("args, words", [
    (["--batch-size", "5000"], ["--batch-size"]),
    (["--image-size", "0"], ["--image-size 0"]),
    (["--image-size", "100000"], ["--image-size 100000"]),
])
def test_unbounded_sizes_are_refused(made, args, words):
    refused(cli(["extract", str(made["data"]), "--backbone", "vgg16", "--weights", "none", *args]), *words)


def test_fractions_that_leave_no_train_split_are_refused(tmp_path):
    data = make_folder(tmp_path / "flat", {"": 3})
    refused(cli(["extract", str(data), "--val-fraction", "0.99", "--weights", "none"]), "no train")


def test_a_long_dataset_name_still_makes_a_run_directory(tmp_path):
    cache = tmp_path / ("d" * 240) / ("mobilenet_v2-160-avg-" + "x" * 200 + ".h5")
    path = new_run_dir(cache, "logreg", tmp_path / "runs")
    assert path.is_dir() and len(path.name.encode()) <= 210 and path.name.endswith(path.name[-15:])


def test_ctrl_c_exits_130_and_leaves_the_cache_whole(tmp_path, converted_cache):
    data = make_folder(tmp_path / "many", {"": 40})
    converted_cache(tmp_path / "cache")  # the child runs the base on ONNX Runtime
    code = ("import pipeline.store as store, time\n_write = store.Parts.write\n"
            "def slow(self, *a):\n    time.sleep(0.3)\n    return _write(self, *a)\n"
            "store.Parts.write = slow\nfrom pipeline.cli import main\n"
            f"main(['extract', {str(data)!r}, '--backbone', 'vgg16', '--image-size', '32', '--weights', 'none', "
            f"'--batch-size', '2', '--runtime', 'onnx', '--cache-dir', {str(tmp_path / 'cache')!r}], "
            "prog_name='transfer')\n")
    # Ctrl-C restored in the child: a shell's background job (nohup, &) starts with SIGINT ignored
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not list((tmp_path / "cache").glob("*/*.parts-*/part-*.h5")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1].decode()[-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-2000:]
    assert "Interrupted" in err.decode() and not list((tmp_path / "cache").glob("*/*.h5"))


def test_tensorflow_start_up_lines_stay_off_stderr():
    done = subprocess.run([sys.executable, "-c", "import pipeline, keras; keras.ops.zeros((1,))"],
                          capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0 and "oneDNN" not in done.stderr and "absl" not in done.stderr, done.stderr


@needs_shared
def test_predict_output_with_a_non_utf8_file_name(tmp_path):
    data = make_folder(tmp_path / "data", {"train": 4, "val": 2})
    cache = extract(data, backbone="mobilenet_025", image_size=32, weights_dir=str(SHARED_WEIGHTS),
                    cache_dir=str(tmp_path / "cache"))["cache"]
    run = train(cache, "logreg", runs_root=tmp_path / "runs")["run_dir"]
    odd = tmp_path / "new"
    odd.mkdir()
    shutil.copy(next((data / "val" / "red").iterdir()), odd / os.fsdecode(b"caf\xe9.png"))
    results = predict(run, [odd], weights_dir=str(SHARED_WEIGHTS))
    assert results[0]["path"].endswith("caf\\xe9.png") and results[0]["label"] == "red"
    out = cli(["predict", run, str(odd), "--weights-dir", str(SHARED_WEIGHTS), "--output", str(tmp_path / "p.csv")])
    assert out.exit_code == 0 and "caf\\xe9.png,red" in (tmp_path / "p.csv").read_text(encoding="utf-8")
    shown = cli(["predict", run, str(odd), "--weights-dir", str(SHARED_WEIGHTS), "--json"])
    assert json.loads(shown.output)[0]["path"].endswith("caf\\xe9.png")
    shown.output.encode("utf-8")  # no lone surrogate
    assert open_run(run).classes == ["blue", "red"]


def test_unreadable_files_skip_the_network_and_batches_fit_the_files(tmp_path, monkeypatch):
    from pipeline import runtimes

    data = make_folder(tmp_path / "data", {"train": 1})
    for i in range(6):
        (data / "train" / "blue" / f"broken{i}.png").write_bytes(f"<html>{i}".encode())
    seen: dict = {"rows": 0}
    real = runtimes.create

    def spy(job):
        runtime = real(job)
        seen["batch"], features = job.batch_size, runtime.features

        def counted(pixels):
            seen["rows"] += len(pixels)
            return features(pixels)

        runtime.features = counted
        return runtime

    monkeypatch.setattr(runtimes, "create", spy)
    s = extract(data, backbone="vgg16", image_size=32, weights="none", batch_size=1000,
                cache_dir=str(tmp_path / "cache"))
    assert s["computed"] == 2 and len(s["skipped"]) == 6
    assert seen == {"rows": 2, "batch": 8}  # the 6 unreadable files never reach the network

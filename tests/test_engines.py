"""Stage-one engines: every engine on every runtime computes the reference features (a contract driven by the
registries), and on Ray killed workers cost no data and augmented views match the local engine's.

Every test that needs Ray is in this file, so one pytest worker starts the run's one Ray (2 CPUs, stopped when
the file ends); they are skipped when Ray Data is not installed.
"""

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import FeatureFile, PipelineError, extract
from pipeline.engines import ENGINES, check
from pipeline.parity import relative_diff
from pipeline.runtimes import RUNTIMES, model_cache, onnx_cache
from helpers import FAST_ARGS, SHARED_DATA, SHARED_WEIGHTS, TINY_COUNTS, make_folder, needs_shared

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray Data not installed (pip install -e '.[ray]')")


def contents(summary: dict) -> tuple[dict, list]:
    """``{(split, path): (label, features)}`` and the skipped paths of a feature file."""
    with FeatureFile(summary["cache"]) as f:
        rows = {(s, p): (y, x) for s in f.splits
                for p, y, x in zip(f.column(s, "paths"), f.column(s, "labels"), f.features(s)[()])}
        return rows, sorted(e["path"] for e in f.errors())


def assert_same(a: dict, b: dict, atol: float = 1e-4) -> None:
    (rows_a, err_a), (rows_b, err_b) = contents(a), contents(b)
    assert rows_a.keys() == rows_b.keys() and err_a == err_b
    assert all(rows_a[k][0] == rows_b[k][0] for k in rows_a)
    assert max(float(np.abs(rows_a[k][1] - rows_b[k][1]).max()) for k in rows_a) <= atol


def part_files(cache_dir: Path) -> list[Path]:
    return list(cache_dir.glob("*/*.parts-*/part-*.h5"))


def kill_when_parts_appear(pid_of, cache_dir: Path, seen: dict) -> threading.Thread:
    """In the background: once a first part file exists, SIGKILL the process ``pid_of()`` names."""
    def watch():
        deadline = time.monotonic() + 300  # minutes on a machine busy with more than the tests
        while time.monotonic() < deadline:
            done = len(part_files(cache_dir))
            pid = pid_of() if done else None
            if pid:
                seen["parts_at_kill"] = done
                os.kill(pid, signal.SIGKILL)
                seen["killed"] = pid
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def inference_actor_pid() -> int | None:
    """The pid of a live Ray Data inference actor (its process title names the callable class)."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"MapBatches(_Infer)" in (proc / "cmdline").read_bytes():
                return int(proc.name)
        except OSError:
            continue
    return None


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray.data", None)
    with pytest.raises(PipelineError, match=r"pip install 'transfer-pipeline\[ray\]'"):
        check("ray")


def test_ray_options_need_the_ray_engine():
    with pytest.raises(PipelineError, match="--engine ray"):
        check("local", workers=2)
    with pytest.raises(PipelineError, match="unknown engine"):
        check("spark")


@needs_ray
def test_killed_actor_is_restarted_and_its_batch_retried(ray_address, tmp_path, fast_args, converted_cache):
    data = make_folder(tmp_path / "many", {"": 60})  # 120 images, 30 batches of 4
    args = {**fast_args, "batch_size": 4}
    cache = converted_cache(tmp_path / "ray")  # actors on ONNX Runtime: no TensorFlow
    seen: dict = {}
    watcher = kill_when_parts_appear(inference_actor_pid, cache, seen)
    remote = extract(data, **{**args, "cache_dir": str(cache), "runtime": "onnx"}, engine="ray")
    watcher.join(timeout=1)
    assert seen.get("killed") and seen["parts_at_kill"] < 30, "the actor was not killed mid-run"
    assert remote["computed"] == 120 and remote["skipped"] == []
    assert_same(extract(data, **args), remote)


@needs_ray
def test_killed_run_leaves_no_file_and_the_rerun_resumes(ray_address, tmp_path, fast_args, converted_cache):
    data = make_folder(tmp_path / "many", {"": 60})
    converted_cache(tmp_path / "ray")  # the driver and its actors on ONNX Runtime
    args = {**fast_args, "batch_size": 4, "cache_dir": str(tmp_path / "ray"), "runtime": "onnx"}
    code = (f"from pipeline import extract; extract({str(data)!r}, engine='ray', engine_options={{'address': {ray_address!r}}}, "
            f"**{args!r})")
    driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict = {}
    kill_when_parts_appear(lambda: driver.pid, Path(args["cache_dir"]), seen).join(timeout=330)
    driver.wait(timeout=30)
    assert seen.get("killed") and driver.returncode == -signal.SIGKILL
    assert not list(Path(args["cache_dir"]).glob("*/*.h5")) and part_files(Path(args["cache_dir"]))
    rerun = extract(data, **args, engine="ray")
    assert rerun["reused"] > 0 and rerun["computed"] == 120 - rerun["reused"]
    assert_same(extract(data, **{**args, "cache_dir": str(tmp_path / "local"), "runtime": "tensorflow"}), rerun)
    assert not part_files(Path(args["cache_dir"]))


@needs_ray
@needs_shared
def test_real_photos_match_local(ray_address, tmp_path):
    """The actors run the driver's runtime: ONNX (auto, for MobileNetV2) from the model cache the job names."""
    args = dict(backbone="mobilenet_v2", image_size=160, weights_dir=str(SHARED_WEIGHTS))
    local = extract(SHARED_DATA / "urban_rural", cache_dir=str(tmp_path / "local"), runtime="tensorflow", **args)
    remote = extract(SHARED_DATA / "urban_rural", cache_dir=str(tmp_path / "ray"), engine="ray", **args)
    assert remote["computed"] == local["computed"] > 0
    assert (local["runtime"], remote["runtime"]) == ("tensorflow", "onnx")
    assert list(model_cache(tmp_path / "ray").glob("mobilenet_v2-160-avg-*.onnx"))
    with FeatureFile(remote["cache"]) as f:  # every part file came from an actor running ONNX
        assert f.config["runtimes"] == "onnx"
    assert_same(local, remote, atol=1e-4 * 10)  # features up to about 10: ONNX within 1e-4 of their scale


@pytest.fixture(scope="module")
def local_tensorflow(tmp_path_factory) -> dict:
    """The tiny folder (with one unreadable file) extracted by the local engine on TensorFlow: the reference
    every engine and runtime must match."""
    root = tmp_path_factory.mktemp("contract")
    data = make_folder(root / "tiny", TINY_COUNTS)
    (data / "train" / "red" / "broken.png").write_bytes(b"<html>not a picture</html>")
    reference = extract(data, **FAST_ARGS, cache_dir=str(root / "cache"), runtime="tensorflow")
    return {"data": data, "reference": reference}


@pytest.mark.parametrize("runtime", list(RUNTIMES))
@pytest.mark.parametrize("engine", list(ENGINES))
def test_every_engine_on_every_runtime_computes_the_reference_features(engine, runtime, local_tensorflow,
                                                                       converted_cache, tmp_path, request):
    if engine == "ray":
        pytest.importorskip("ray.data", reason="Ray Data not installed (pip install -e '.[ray]')")
        request.getfixturevalue("ray_address")
    # two actors on ONNX Runtime, their parts written in order; one on TensorFlow, whose import costs 7 s of CPU
    workers = 2 if runtime == "onnx" else 1
    args = dict(FAST_ARGS, cache_dir=str(converted_cache(tmp_path / "cache")), engine=engine, runtime=runtime,
                engine_options={"workers": workers} if engine == "ray" else None)
    s = extract(local_tensorflow["data"], **args)
    reference = local_tensorflow["reference"]
    assert s["runtime"] == runtime and s["computed"] == reference["computed"] == 22
    assert [x["path"] for x in s["skipped"]] == ["train/red/broken.png"] and "Pillow" in s["skipped"][0]["reason"]
    (got, _), (want, _) = contents(s), contents(reference)
    assert got.keys() == want.keys() and all(got[k][0] == want[k][0] for k in want)
    keys = sorted(want)
    difference = relative_diff(np.stack([want[k][1] for k in keys]), np.stack([got[k][1] for k in keys]))
    assert difference <= (0 if (engine, runtime) == ("local", "tensorflow") else onnx_cache.TOLERANCE)
    again = extract(local_tensorflow["data"], **args)
    assert again["computed"] == 0 and again["reused"] == 22


AUGMENT = dict(augment=2, augment_policy="flip,rotate=0.2", seed=3)


def views(summary: dict) -> dict:
    """``{(split, path, view): (label, features)}`` of a feature file."""
    with FeatureFile(summary["cache"]) as f:
        return {(s, p, int(v)): (int(y), x) for s in f.splits
                for p, v, y, x in zip(f.column(s, "paths"), f.column(s, "view"), f.column(s, "labels"),
                                      f.features(s)[()])}


@needs_ray
def test_augmented_views_on_ray_match_local(ray_address, tiny_data, fast_args, tmp_path):
    local = extract(tiny_data, **fast_args, **AUGMENT)
    remote = extract(tiny_data, **{**fast_args, "cache_dir": str(tmp_path / "ray")}, **AUGMENT, engine="ray",
                     engine_options={"workers": 2})
    assert remote["splits"] == local["splits"] == {"train": 36, "val": 6, "test": 4}
    assert remote["computed"] == local["computed"] == 46
    a, b = views(local), views(remote)
    assert a.keys() == b.keys() and all(a[k][0] == b[k][0] for k in a)
    assert max(float(np.abs(a[k][1] - b[k][1]).max()) for k in a) <= 1e-4
    first = next(k for k in b if k[2] == 1)
    assert np.abs(b[first][1] - b[(first[0], first[1], 0)][1]).max() > 1e-3  # a view is not the image itself
    assert all(remote["timings"][name] > 0 for name in ("decode", "infer", "write"))

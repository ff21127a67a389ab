"""Fixtures: small synthetic folders and fast settings, what is built once per session (tiny runs, ../shared
extractions, Ray), and the skip of `real` tests without ../shared. Helpers live in ``helpers.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import (DENSE_FAST, FAST_ARGS, SHARED_MISSING, TINY_COUNTS, SharedExtracts, make_folder, shared_present,
                     vgg16_weights)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``real`` need ../shared: skipped, saying why, when it is absent.

    ``make test``'s two workers take a file at a time in this order: the files marked ``slow``, so that neither
    worker is left with a long one at the end; then the tests on Ray (all in ``test_engines.py``, so one worker
    starts the run's one Ray), whose minute or so of mostly waiting for actors the other worker fills;
    then the rest. (Ray last left one core idle for a minute at the end: 7:17 here; first, beside the slow
    files, 7:15 against 6:53 in the middle.)
    """
    ray_files = {item.path for item in items if uses_ray(item)}  # whole files: xdist hands out a file at a time
    items.sort(key=lambda item: 0 if item.get_closest_marker("slow") else 1 if item.path in ray_files else 2)
    if shared_present():
        return
    skip = pytest.mark.skip(reason=SHARED_MISSING)
    for item in items:
        if item.get_closest_marker("real"):
            item.add_marker(skip)


def uses_ray(item) -> bool:
    """Whether a test needs `ray_address`, or is parametrized with the ray engine."""
    params = getattr(item, "callspec", None)
    return "ray_address" in item.fixturenames or (params is not None and params.params.get("engine") == "ray")


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    """train 6+6, val 3+3, test 2+2 PNGs."""
    return make_folder(tmp_path / "tiny", TINY_COUNTS)


@pytest.fixture
def fast_args(tmp_path: Path) -> dict:
    """Extraction settings that run in a second: VGG16 with (seeded) random weights at 32 px.

    VGG16 keeps random-init features around 0.1, so value comparisons can fail; random-init
    MobileNets shrink them to about 1e-17."""
    return dict(FAST_ARGS, cache_dir=str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> dict:
    """Built once per session (copy before changing): ``data`` (train 8+8, val 4+4 PNGs), ``weights`` (a fixed
    VGG16 file, so predict and export can rebuild the base), ``cache`` (its features at 32 px) and ``runs``
    (a run directory per registered head)."""
    from pipeline import extract, train
    from pipeline.heads import names

    root = tmp_path_factory.mktemp("tiny_runs")
    data = make_folder(root / "colors", {"train": 8, "val": 4})
    weights = vgg16_weights(root / "vgg16.weights.h5")
    cache = extract(data, backbone="vgg16", image_size=32, weights=str(weights), cache_dir=str(root / "cache"),
                    batch_size=16)["cache"]
    runs = {head: train(cache, head, DENSE_FAST if head == "dense" else None, run_dir=root / head)["run_dir"]
            for head in names()}
    return {"data": data, "cache": cache, "runs": runs, "weights": weights, "root": root}


@pytest.fixture(scope="session", autouse=True)
def _model_cache(tmp_path_factory):
    """One model cache for the run (``$TRANSFER_MODEL_CACHE``, shared by the workers, whose conversions take turns
    by its lock): a base is converted to ONNX once, not once per test's cache (49 conversions and 64 s of CPU
    before). Files whose tests look into ``<cache-dir>/models`` use :func:`own_model_cache`."""
    from pipeline.runtimes import MODEL_CACHE_ENV

    run_root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        run_root = run_root.parent  # pytest-N/, above each worker's popen-gwN/
    os.environ[MODEL_CACHE_ENV] = str(run_root / "models")


@pytest.fixture(scope="module")
def own_model_cache():
    """``$TRANSFER_MODEL_CACHE`` unset for a file: each cache converts into its own ``models/`` folder."""
    from pipeline.runtimes import MODEL_CACHE_ENV

    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(MODEL_CACHE_ENV)
        yield


@pytest.fixture(scope="session")
def converted_cache(tmp_path_factory):
    """``converted_cache(folder)``: ``folder``, for a cache whose runs find ``FAST_ARGS``' base (VGG16, 32 px,
    random weights) converted to ONNX in the session's model cache. ``transfer extract ... --runtime onnx`` there
    never imports TensorFlow, in a child process or a Ray actor (a second of CPU, not seven)."""
    from pipeline import extract

    root = tmp_path_factory.mktemp("converted")
    extract(make_folder(root / "photos", {"train": 1}), cache_dir=str(root / "cache"), **FAST_ARGS, runtime="onnx")
    return Path


@pytest.fixture(scope="session")
def shared_extracts(tmp_path_factory) -> SharedExtracts:
    """``shared_extracts(dataset, **settings)``: the summary of the session's one extraction of a ../shared
    dataset with those settings (see :class:`helpers.SharedExtracts`)."""
    return SharedExtracts(tmp_path_factory.mktemp("shared_extracts"))


@pytest.fixture(scope="session", autouse=True)
def _tensorflow():
    """TensorFlow in the test workers: quiet, on the CPU, and without its graph rewriting (grappler), which on the
    suite's small models costs a fifth of a first fit (MobileNet 0.25 at 128 px fine-tuned: 4.3 s of CPU against
    3.4) and brings back nothing at their sizes; the product keeps TensorFlow's defaults."""
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray with 2 CPUs for the file of tests that use it (``test_engines.py``: one worker starts it, and
    it stops when they end); its address lets other processes join it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()

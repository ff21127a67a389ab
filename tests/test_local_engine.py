"""The TensorFlow runtime and the decode loop the engines share: one compiled batch shape (padded for a short
last batch), decoding a bounded number of batches ahead in file order, and which layers run in bfloat16."""

from dataclasses import replace

import numpy as np

from pipeline import backbones, images
from pipeline.engines import FrozenBase
from pipeline.runtimes.tensorflow import TensorFlowRuntime


def tiny_engine(batch_size: int = 8) -> TensorFlowRuntime:
    """VGG16 at 32 px, random weights: fast, and unlike random MobileNets its features do not vanish (~1e-17)."""
    spec = backbones.get("vgg16")
    weights = backbones.resolve_weights(spec, 32, "none")
    return TensorFlowRuntime(FrozenBase(spec, 32, "avg", "backbone", "float32", weights, batch_size))


def test_short_batch_is_padded_and_matches_a_full_batch():
    engine = tiny_engine()
    pixels = (np.arange(8, dtype=np.uint8)[:, None, None, None] * 30 + np.zeros((8, 32, 32, 3), np.uint8))
    full = engine.features(pixels)
    short = engine.features(pixels[:3])
    assert full.shape == (8, 512) and short.shape == (3, 512) and short.dtype == np.float32
    assert np.abs(full[0] - full[7]).max() > 0.01  # rows depend on their own image
    np.testing.assert_allclose(short, full[:3], rtol=1e-4, atol=1e-5)


def test_build_happens_once_and_is_timed():
    engine = tiny_engine()
    engine.build()
    first, infer = engine.build_seconds, engine._infer
    engine.build()
    assert first > 0 and engine._infer is infer and engine.build_seconds == first


def test_decoding_runs_a_bounded_number_of_batches_ahead_and_keeps_file_order(monkeypatch):
    decoded: list[int] = []

    def fake_load(path, size):
        decoded.append(int(path))
        if int(path) == 6:
            return None, "unreadable"
        return np.full((size, size, 3), int(path), np.uint8), ""

    monkeypatch.setattr(images, "load_image", fake_load)
    batch, n = 4, 40
    batches = images.decode_batches([str(i) for i in range(n)], 8, batch)
    first = next(batches)
    assert first.index == [0, 1, 2, 3] and [int(p[0, 0, 0]) for p in first.pixels] == first.index
    assert len(decoded) <= (images.AHEAD + 1) * batch  # memory stays flat however many files there are
    rest = list(batches)
    assert [i for b in rest for i in b.index] == list(range(4, n))
    assert rest[0].reasons == {6: "unreadable"} and not rest[0].pixels[2].any()  # black, with a reason
    assert all(int(p[0, 0, 0]) == i for b in rest for p, i in zip(b.pixels, b.index) if i != 6)


def test_bfloat16_runs_full_convolutions_in_bfloat16_and_the_rest_in_float32():
    spec = backbones.get("mobilenet_v2")
    model = backbones.build(spec, 32, "avg", backbones.resolve_weights(spec, 32, "none"), "bfloat16")
    compute = {type(layer).__name__: layer.compute_dtype for layer in model.layers}
    assert compute["Conv2D"] == "bfloat16" and compute["DepthwiseConv2D"] == "float32"
    assert compute["BatchNormalization"] == "float32" and compute["Add"] == "float32"
    assert all(w.dtype == "float32" for w in model.weights)
    fp32, bf16 = tiny_engine(), tiny_engine()
    bf16.job = replace(bf16.job, precision="bfloat16")
    pixels = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), np.uint8)
    a, b = fp32.features(pixels), bf16.features(pixels)
    assert b.dtype == np.float32 and 0 < np.abs(a - b).max() and np.linalg.norm(a - b) < 0.05 * np.linalg.norm(a)

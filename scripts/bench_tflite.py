"""What each TFLite quantization costs in agreement with Keras, and what it saves in size and time.

    .venv/bin/python scripts/bench_tflite.py DATA_DIR [--weights-dir DIR] [--size 224] [--calibration 100]

An end-to-end model as ``transfer export`` builds it: MobileNetV2 (ImageNet weights, preprocessing as a
layer, average pooling) and a softmax ``Dense`` holding a logistic regression fitted on the Keras features of
``DATA_DIR/train``. It is converted with ``converting.to_tflite`` to float32, float16 and int8 (calibrated on
``--calibration`` random train photos) and every file is run on ``DATA_DIR/val``: size, top-1 agreement
with Keras, accuracy against the labels, the largest probability difference, and batch-1 latency (median of
interleaved calls, ``--threads`` interpreter threads).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import parity  # noqa: E402
from pipeline.deploy import converting  # noqa: E402
from pipeline.images import load_image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline.assemble import assemble  # noqa: E402


def split_pixels(root: Path, split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """All readable photos of ``split`` as float32 pixels, and their class indices."""
    pixels, labels = [], []
    classes = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
    for label, cls in enumerate(classes):
        for f in sorted((root / split / cls).iterdir()):
            image, _ = load_image(str(f), size)
            if image is not None:
                pixels.append(image)
                labels.append(label)
    return np.stack(pixels).astype(np.float32), np.array(labels)


def end_to_end(data: Path, size: int, weights_dir: str | None):
    """The Keras model (base + logistic regression as a softmax Dense), and the train and val pixels."""
    import keras
    from sklearn.linear_model import LogisticRegression

    from pipeline import backbones

    spec = backbones.get("mobilenet_v2")
    base = assemble(spec, size, "avg", backbones.resolve_weights(spec, size, "imagenet", weights_dir), "backbone")[0]
    train, train_y = split_pixels(data, "train", size)
    logreg = LogisticRegression(C=0.1, max_iter=5000).fit(base.predict(train, verbose=0), train_y)
    coef, intercept = logreg.coef_, logreg.intercept_
    if coef.shape[0] == 1:  # binary: softmax over [0, z] is the sigmoid of z
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.r_[0.0, intercept]
    head = keras.layers.Dense(len(coef), activation="softmax", name="probabilities")
    head.build((None, coef.shape[1]))
    head.set_weights([coef.T.astype(np.float32), intercept.astype(np.float32)])
    return keras.Model(base.input, head(base.output)), train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--weights-dir")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--calibration", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    model, train = end_to_end(args.data, args.size, args.weights_dir)
    val, val_y = split_pixels(args.data, "val", args.size)
    expected = model.predict(val, verbose=0)
    print(f"keras: val accuracy {np.mean(expected.argmax(1) == val_y):.3f} on {len(val)} photos", flush=True)
    # A random sample: the first photos of a sorted folder are all of one class, and calibrating on one class
    # clips the other classes' logits (every bee came out 50/50, 48% agreement with Keras).
    sample = np.random.default_rng(0).permutation(len(train))[:args.calibration]
    calibration = np.array_split(train[sample], max(1, args.calibration // 25))
    runners, rows = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for quantize in converting.QUANTIZATIONS:
            start = time.perf_counter()
            path = converting.to_tflite(model, Path(tmp) / f"{quantize}.tflite", quantize, calibration)
            seconds = time.perf_counter() - start
            runners[quantize] = converting.tflite_runner(path, threads=args.threads)
            got = runners[quantize](val)
            rows[quantize] = {"MB": round(path.stat().st_size / 2**20, 2), "convert_s": round(seconds, 1),
                              "top1_agreement": round(parity.top1_agreement(expected, got), 4),
                              "accuracy": round(float(np.mean(got.argmax(1) == val_y)), 4),
                              "max_prob_diff": round(parity.max_abs_diff(expected, got), 5)}
        latency = {k: [] for k in runners}
        for i in range(args.rounds):
            for key, run in runners.items():
                start = time.perf_counter()
                run(val[i % len(val)][None])
                latency[key].append(time.perf_counter() - start)
    for key, row in rows.items():
        print(key, row | {"batch1_ms": round(1000 * statistics.median(latency[key]), 2)}, flush=True)
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()

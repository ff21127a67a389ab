"""Every export format of a run, as `transfer export` checks it, and what a plain deploy script's decoding costs.

    .venv/bin/python scripts/bench_export.py DATA_DIR [--weights-dir DIR] [--backbone mobilenet_v2] [--size 224]
        [--heads logreg,dense]

Extracts ``DATA_DIR`` once, trains each head, and exports each run in every format: the table rows are the
export's own check against ``predict`` on the val images (top-1 agreement, largest probability difference,
file size, milliseconds per image at batch 1, median of 20 calls).

Then the val photos are decoded the plain way a deploy script does (Pillow, RGB, bilinear resize: no DCT-scaled
JPEG ``draft`` as ``extract`` uses) and run through every file with its runtime alone: top-1 agreement with
``predict`` (which decodes as ``extract``), with the float32 file on the same pixels, accuracy against the
labels, and the int8 file's size against the float32 one's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import export, extract, predict, train  # noqa: E402
from pipeline.parity import max_abs_diff, top1_agreement  # noqa: E402
from pipeline.deploy.formats import FORMATS  # noqa: E402
from pipeline.deploy.check_photos import split_files  # noqa: E402
from pipeline.images import decode_all  # noqa: E402
from pipeline.runs import open_run  # noqa: E402

NAMES = {"keras": "model.keras", "savedmodel": "saved_model", "onnx": "model.onnx", "tflite": "model.tflite",
         "tflite-float16": "model-float16.tflite", "tflite-int8": "model-int8.tflite"}


def plain_pixels(files: list[str], size: int) -> np.ndarray:
    """What a deploy script feeds: Pillow, RGB, one bilinear resize, float32 0..255."""
    from PIL import Image

    def load(f: str) -> np.ndarray:
        with Image.open(f) as im:
            return np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), np.float32)

    return np.stack([load(f) for f in files])


def bench_run(run_dir: str, out: Path, weights_dir: str | None) -> None:
    run = open_run(run_dir)
    size = int(run.features["input_size"])
    files, truth = split_files(run, "val")
    labels = np.array([run.classes.index(t) for t in truth])
    drafted = np.array([[r["probabilities"][c] for c in run.classes] for r in predict(run_dir, files, weights_dir)])
    plain = plain_pixels(files, size)
    print(f"\n{run.config['head']}: {len(files)} val photos; predict accuracy {np.mean(drafted.argmax(1) == labels):.1%}")
    print("| format | agreement with predict | max prob diff | size | ms/image (batch 1) |")
    print("|---|---|---|---|---|")
    outputs = {}
    for name in FORMATS:
        r = export(run_dir, out / NAMES[name], name, weights_dir)
        c = r["check"]
        print(f"| `{name}` | {c['top1_agreement']:.1%} | {c['max_prob_diff']:.1e} | {r['bytes'] / 2**20:.1f} MB "
              f"| {r['ms_per_image']:.1f} |", flush=True)
        outputs[name] = FORMATS[name].load(out / NAMES[name])(plain)
    changed = int(np.sum(np.any(plain != decode_all(files, size)[0], axis=(1, 2, 3))))
    print(f"\nplain decoding (no draft) changes the pixels of {changed} of {len(files)} photos; the float32 file "
          f"moves by up to {max_abs_diff(drafted, outputs['tflite']):.3f} in probability. Each file, its runtime alone:")
    for name, got in outputs.items():
        print(f"  {name:<15} agrees with predict {top1_agreement(drafted, got):.1%}, with the float32 file "
              f"{top1_agreement(outputs['tflite'], got):.1%}, accuracy {np.mean(got.argmax(1) == labels):.1%}")
    sizes = {n: (out / NAMES[n]).stat().st_size for n in ("tflite", "tflite-int8")}
    print(f"  int8 file is {sizes['tflite-int8'] / sizes['tflite']:.0%} of the float32 file")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--weights-dir")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--heads", default="logreg,dense")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        cache = extract(args.data, backbone=args.backbone, image_size=args.size, weights_dir=args.weights_dir,
                        cache_dir=f"{tmp}/cache")["cache"]
        for head in args.heads.split(","):
            run_dir = train(cache, head, run_dir=f"{tmp}/run-{head}")["run_dir"]
            bench_run(run_dir, Path(tmp) / f"export-{head}", args.weights_dir)
    print(f"\nload average: {os.getloadavg()}")


if __name__ == "__main__":
    main()

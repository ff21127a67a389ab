"""How well the audit finds planted label flips and foreign photos, against the reference methods.

Each scenario takes the train+val images of one dataset from ``../shared/data`` (features cached by
``transfer extract``), flips the labels of a random few percent of them, and adds ten images of other
datasets under random classes. Because the cache is keyed by content, this is the same as copying the
files into a new folder and extracting it, only faster. For each seed it reports:

- label issues: recall (flipped images found) and precision (found images that were flipped), for the
  audit as shipped (10 folds, two rounds) and for the reference (5-fold logistic regression, C=0.01, one
  round of confident learning);
- outliers: how many of the ten foreign images are among the 20 highest scores, for the audit's score and
  for cleanlab's ``OutOfDistribution`` (mean cosine distance to the 10 nearest neighbours).

    python scripts/bench_audit.py --data ../shared/data --weights-dir ../shared/weights [--seeds 5] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SCENARIOS = {
    "hymenoptera + hotdog/urban photos": ("hymenoptera", ("hotdog_nothotdog", "urban_rural")),
    "hymenoptera + hotdog photos": ("hymenoptera", ("hotdog_nothotdog",)),
    "hotdog_nothotdog + hymenoptera/urban photos": ("hotdog_nothotdog", ("hymenoptera", "urban_rural")),
    "insects vs food + urban/rural photos": ("hymenoptera+hotdog_nothotdog", ("urban_rural",)),
    "insects vs food + odd images": ("hymenoptera+hotdog_nothotdog", ("odd",)),
}
ODD = "odd"  # a folder of made-up foreign images (below), written next to the cache
FOREIGN = 10


def cached_rows(data: Path, name: str, args):
    """The train+val images of ``data/name`` and their pooled features (extracted once, then reused)."""
    import pipeline
    from pipeline.audit.vectors import read_rows

    source = write_odd_images(Path(args.cache_dir) / ODD) if name == ODD else data / name
    cache = pipeline.extract(source, backbone=args.backbone, image_size=args.image_size,
                             weights_dir=args.weights_dir, cache_dir=args.cache_dir)["cache"]
    with pipeline.FeatureFile(cache) as f:
        return read_rows(f).in_splits(("train", "val")), f.classes


def write_odd_images(root: Path) -> Path:
    """Ten images that belong in no photo dataset: blank frames, noise, a gradient, a chart, a page of text,
    a screenshot-like window, a grid of handwritten digits, and scikit-learn's two sample photos."""
    from PIL import Image, ImageDraw
    from sklearn.datasets import load_digits, load_sample_images

    folder = root / "train" / "odd"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = {"white": Image.new("RGB", (320, 240), "white"), "black": Image.new("RGB", (320, 240), "black"),
              "noise": Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)),
              "gradient": Image.fromarray(np.repeat(np.linspace(0, 255, 320, dtype=np.uint8)[None, :, None], 240, 0)
                                          .repeat(3, 2))}
    page = Image.new("RGB", (320, 400), "white")
    draw = ImageDraw.Draw(page)
    for y in range(20, 380, 18):
        draw.text((20, y), "lorem ipsum dolor sit amet " * 2, fill="black")
    images["page"] = page
    window = Image.new("RGB", (320, 240), (236, 236, 236))
    draw = ImageDraw.Draw(window)
    draw.rectangle((0, 0, 320, 24), fill=(40, 90, 160))
    draw.rectangle((20, 50, 300, 80), outline="black", fill="white")
    draw.rectangle((220, 190, 300, 220), fill=(40, 90, 160))
    draw.text((30, 60), "Search...", fill="gray")
    images["screenshot"] = window
    chart = Image.new("RGB", (320, 240), "white")
    draw = ImageDraw.Draw(chart)
    draw.line((30, 210, 300, 210), fill="black")
    draw.line((30, 210, 30, 20), fill="black")
    for k, h in enumerate(rng.integers(30, 180, 8)):
        draw.rectangle((45 + 32 * k, 210 - int(h), 65 + 32 * k, 210), fill=(200, 80, 40))
    images["chart"] = chart
    digits = load_digits().images[:64].reshape(8, 8, 8, 8).transpose(0, 2, 1, 3).reshape(64, 64)
    images["digits"] = Image.fromarray((255 - digits * 16).astype(np.uint8)).resize((256, 256)).convert("RGB")
    for name, photo in zip(("china", "flower"), load_sample_images().images):
        images[name] = Image.fromarray(photo)
    for name, im in images.items():
        im.save(folder / f"{name}.png")
    return root


def merged(parts: list) -> tuple:
    """Several datasets as one, each dataset a class (e.g. insects vs food: two broad, well separated classes)."""
    from pipeline.audit.vectors import Rows
    from pipeline.datasets import Entry

    classes = [f"class{k}" for k in range(len(parts))]
    images = [Entry(e.split, classes[k], e.path, e.sha256) for k, (rows, _) in enumerate(parts) for e in rows.images]
    labels = np.concatenate([np.full(len(rows.labels), k) for k, (rows, _) in enumerate(parts)])
    vectors = np.concatenate([rows.vectors for rows, _ in parts])
    return Rows(images, np.zeros(len(labels), int), labels, vectors), classes


def planted(target, foreign: list, flip: float, seed: int):
    """``(rows, flipped mask, foreign mask)``: ``target`` with flipped labels plus ``FOREIGN`` foreign rows."""
    from pipeline.audit.vectors import Rows
    from pipeline.datasets import Entry

    rows, classes = target
    rng = np.random.default_rng(seed)
    n, k = len(rows.labels), max(1, round(flip * len(rows.labels)))
    flipped = np.zeros(n + FOREIGN, bool)
    flipped[rng.choice(n, k, replace=False)] = True
    labels = rows.labels.copy()
    for i in np.flatnonzero(flipped[:n]):
        labels[i] = rng.choice([c for c in range(len(classes)) if c != labels[i]])
    pool = [(e, v) for other, _ in foreign for e, v in zip(other.images, other.vectors)]
    picks = rng.choice(len(pool), FOREIGN, replace=False)
    extra_labels = rng.integers(0, len(classes), FOREIGN)
    images = [Entry(e.split, classes[y], e.path, e.sha256) for e, y in zip(rows.images, labels)]
    images += [Entry("train", classes[y], f"foreign/{pool[i][0].path}", pool[i][0].sha256)
               for i, y in zip(picks, extra_labels)]
    vectors = np.concatenate([rows.vectors, np.stack([pool[i][1] for i in picks])])
    is_foreign = np.arange(n + FOREIGN) >= n
    return Rows(images, np.zeros(n + FOREIGN, int), np.concatenate([labels, extra_labels]), vectors), flipped, is_foreign


def label_scores(rows, classes, flipped, reference: bool = False) -> tuple[float, float]:
    """Recall and precision of the label issues: the audit's, or the reference's (5 folds, one round)."""
    from pipeline.audit import rank_findings
    from pipeline.audit.labels import find_label_issues

    found = find_label_issues(rows, classes, folds=5, rounds=1) if reference else rank_findings(rows, classes)["label_issues"]
    found = {x["path"] for x in found}
    hit = np.array([e.path in found for e in rows.images])
    return float((hit & flipped).sum() / flipped.sum()), float((hit & flipped).sum() / max(hit.sum(), 1))


def outlier_hits(rows, is_foreign) -> tuple[int, int]:
    """Foreign images among the top 20: the audit's score, cleanlab's OutOfDistribution."""
    from cleanlab.outlier import OutOfDistribution

    from pipeline.audit.outliers import outlier_scores

    ours = np.argsort(-outlier_scores(rows.vectors, rows.labels))[:20]
    ood = np.argsort(OutOfDistribution().fit_score(features=rows.vectors, verbose=False))[:20]
    return int(is_foreign[ours].sum()), int(is_foreign[ood].sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--weights-dir", default="../shared/weights")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--cache-dir", default="cache")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--flips", default="0.03,0.05", help="Fractions of labels flipped, comma separated.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    cached = {}
    report = []
    for scenario, (target, sources) in SCENARIOS.items():
        for name in (*target.split("+"), *sources):
            if name not in cached:
                cached[name] = cached_rows(args.data, name, args)
        if target not in cached:
            cached[target] = merged([cached[name] for name in target.split("+")])
        for flip in (float(x) for x in args.flips.split(",")):
            for seed in range(args.seeds):
                rows, flipped, is_foreign = planted(cached[target], [cached[s] for s in sources], flip, seed)
                classes = cached[target][1]
                ours, ood = outlier_hits(rows, is_foreign)
                report.append({"scenario": scenario, "flip": flip, "seed": seed, "images": len(rows.images),
                               "flipped": int(flipped.sum()),
                               "audit": label_scores(rows, classes, flipped),
                               "reference": label_scores(rows, classes, flipped, reference=True),
                               "outliers_top20": ours, "ood_top20": ood})
    if args.json:
        print(json.dumps(report))
        return
    print(f"{'scenario':46s} {'flip':>5s} {'audit recall/precision':>23s} {'reference':>12s} {'foreign in top 20':>18s} {'OOD':>4s}")
    for scenario in SCENARIOS:
        for flip in sorted({r["flip"] for r in report}):
            rs = [r for r in report if r["scenario"] == scenario and r["flip"] == flip]
            mean = lambda key, i: np.mean([r[key][i] for r in rs])  # noqa: E731
            print(f"{scenario:46s} {flip:5.2f} {mean('audit', 0):11.2f} / {mean('audit', 1):.2f}"
                  f" {mean('reference', 0):6.2f} / {mean('reference', 1):.2f}"
                  f" {np.mean([r['outliers_top20'] for r in rs]):18.1f} {np.mean([r['ood_top20'] for r in rs]):4.1f}")


if __name__ == "__main__":
    main()

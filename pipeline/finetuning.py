"""Stage three: fine-tune the top of the base together with a trained ``dense`` head, end to end on images.

The model is assembled as the export is (:mod:`pipeline.assemble`: preprocessing layers, the recorded base
and the trained head, so training starts from a good head) with the augmentation layers in front. The top
``unfreeze`` layers of the base (or every layer from ``unfreeze_from``) become trainable, except the
BatchNormalization layers: they stay frozen, hence in inference mode, as the Keras transfer learning
guide recommends. (In Keras 3.15, ``base(x, training=False)`` inside a functional model does not do
it: a training call of the outer model still updates their statistics.) Training uses a low learning
rate and early stopping on val accuracy (or loss), and keeps the starting weights if no epoch beats them.

The splits are the ones of the run's feature file (its image paths, read from ``data_dir`` or the
dataset root it records); images are decoded as in stage one, and held in memory as uint8 up to
:data:`~pipeline.config.IN_MEMORY_BYTES` of train pixels, else decoded again on every pass
(:mod:`pipeline.photos`).

The run directory has the layout of :mod:`pipeline.runs` with the fine-tuned base saved as
``base.weights.h5`` and recorded as the features' weights file, so ``predict`` and ``export`` rebuild
the fine-tuned model; ``baseline.json`` holds the frozen head's metrics.
"""

from __future__ import annotations

import difflib
import math
import os
import time
from pathlib import Path

import numpy as np

from . import augment as augmentation
from . import runs
from .atomic import replacing
from .config import IN_MEMORY_BYTES, fingerprint, utc_now
from .errors import PipelineError
from .hashing import file_sha256
from .heads.dense import network_arrays
from .photos import Photos, passes_end_quietly
from .store import FeatureFile

MONITORS = ("val_accuracy", "val_loss")


def _source_run(run_dir: str | os.PathLike) -> runs.Run:
    run = runs.open_run(run_dir)
    if run.config["head"] != "dense":
        raise PipelineError(f"{run_dir} holds a {run.config['head']} head; fine-tuning starts from a dense head: "
                            f"`transfer train CACHE --head dense` first")
    return run


def build(run: runs.Run, policy: str = "default", weights_dir: str | None = None):
    """``(model, base, head)``: image -> augmentation -> preprocessing -> base -> trained head."""
    from .assemble import assemble_recorded

    (head,) = run.head().export_layers(run.config["feature_shape"])  # a dense head is one Keras model
    model, base = assemble_recorded(run.features, weights_dir, head=[head], augment=augmentation.layers(policy),
                                    name=f"{run.features['backbone']}_finetune", own_base=True)  # trained below
    return model, base, head


def unfreeze(base, top: int | None = None, start: str | None = None) -> int:
    """Make the top ``top`` layers of ``base`` (or all from the layer named ``start``) trainable, except
    BatchNormalization layers, which stay frozen and in inference mode; return how many layers are unfrozen."""
    import keras

    names = [layer.name for layer in base.layers]
    if top is not None and start is not None:
        raise PipelineError("pass --unfreeze N or --unfreeze-from LAYER, not both")
    if start is not None:
        if start not in names:
            close = difflib.get_close_matches(start, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise PipelineError(f"{base.name} has no layer {start!r}{hint} (see the list with --dry-run)")
        cut = names.index(start)
    else:
        top = len(names) // 3 if top is None else top
        if not 0 <= top <= len(names):
            raise PipelineError(f"--unfreeze must be between 0 and {len(names)} (the layers of {base.name})")
        cut = len(names) - top
    base.trainable = True
    for i, layer in enumerate(base.layers):
        # a frozen BatchNormalization runs in inference mode (its statistics stay the ImageNet ones)
        layer.trainable = i >= cut and not isinstance(layer, keras.layers.BatchNormalization)
    return len(names) - cut


def _count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def layer_table(model, base) -> dict:
    """What ``model.summary()`` shows: layers with parameters and trainability, and the totals."""
    def row(layer) -> dict:
        return {"name": layer.name, "type": type(layer).__name__, "params": _count(layer.weights),
                "trainable": _count(layer.trainable_weights)}

    return {"layers": [row(layer) for layer in model.layers],
            "base_layers": [row(layer) for layer in base.layers],
            "total_params": _count(model.weights), "trainable_params": _count(model.trainable_weights),
            "non_trainable_params": _count(model.non_trainable_weights)}


def _splits(run: runs.Run, data_dir: str | os.PathLike | None, size: int, stream: bool | None) -> dict[str, Photos]:
    """``{split: Photos}`` of the run's feature file (its images, not augmented views), held in memory unless
    ``stream`` (None: when train's pixels exceed :data:`~pipeline.config.IN_MEMORY_BYTES`)."""
    cache = Path(run.config["cache"])
    if not cache.is_file():
        raise PipelineError(f"the run's feature file {cache} is gone; finetune reads the split lists from it: "
                            "extract again with the run's settings")
    root = Path(data_dir or run.features["dataset_root"])
    if not root.is_dir():
        raise PipelineError(f"dataset folder {root} not found; pass --data with the folder the features came from")
    with FeatureFile(cache) as f:
        lists = {split: (f.column(split, "paths")[f.column(split, "view") == 0],
                         f.column(split, "labels")[f.column(split, "view") == 0]) for split in f.splits}
    if stream is None:
        stream = len(lists.get("train", ((),))[0]) * size * size * 3 > IN_MEMORY_BYTES
    out = {split: Photos(root, paths, labels, size, held=not stream) for split, (paths, labels) in lists.items()}
    if "val" not in out or not len(out["val"]) or (out["val"].held is not None and not len(out["val"].held[1])):
        raise PipelineError("fine-tuning stops early on val: extract with a val/ folder or --val-fraction and train again")
    return out


def _evaluate(model, data: dict[str, Photos], classes: list[str], batch_size: int) -> tuple[dict, dict]:
    """``(metrics, predictions)`` of the model on every split's readable images."""
    from .training import evaluate

    metrics, predictions = {}, {}
    for split, photos in data.items():
        parts = [(model.predict(pixels, batch_size=batch_size, verbose=0), labels, paths)
                 for pixels, labels, paths in photos.chunks()]
        proba = np.concatenate([p for p, _, _ in parts]) if parts else np.zeros((0, len(classes)), np.float32)
        labels = np.concatenate([y for _, y, _ in parts]) if parts else np.zeros(0, np.int64)
        paths = [path for _, _, names in parts for path in names]
        metrics[split], predictions[split] = evaluate(proba, labels, classes), (paths, labels, proba)
    return metrics, predictions


def finetune(run_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None, unfreeze_top: int | None = None,
             unfreeze_from: str | None = None, epochs: int = 10, lr: float = 1e-5, augment: str = "default",
             batch_size: int = 16, patience: int = 3, monitor: str = "val_accuracy", seed: int = 0,
             out_dir: str | os.PathLike | None = None, runs_root: str | os.PathLike = "runs",
             weights_dir: str | None = None, dry_run: bool = False, stream: bool | None = None) -> dict:
    """Fine-tune a ``dense`` run end to end on its images; write a run directory.

    Returns ``run_dir``, ``metrics`` ({split: {accuracy, ...}}), ``baseline`` (the frozen head's metrics),
    ``epochs_trained``, ``epoch_kept`` (0: the starting weights), ``history``, ``unfrozen`` and the
    parameter counts. With ``dry_run`` only the layer table and counts (nothing is trained or written).
    ``stream``: decode the photos again on every pass (flat memory) instead of holding them (None: when
    train's pixels exceed :data:`~pipeline.config.IN_MEMORY_BYTES`).

    Examples
    --------
    >>> r = finetune("runs/hotdog-mobilenet_v2-160-avg-dense-20250101-120000", unfreeze_top=30)  # doctest: +SKIP
    >>> r["baseline"]["val"]["accuracy"], r["metrics"]["val"]["accuracy"]                        # doctest: +SKIP
    (0.92, 0.94)
    """
    import keras

    if epochs < 1 or batch_size < 1 or patience < 0 or not 0 < lr < math.inf:
        raise PipelineError("--epochs and --batch-size must be at least 1, --patience 0 or more, --lr above 0")
    if monitor not in MONITORS:
        raise PipelineError(f"--monitor {monitor!r} is not one of: {', '.join(MONITORS)}")
    if out_dir is not None and not dry_run:
        runs.check_target(out_dir)  # before training, not after
    source = _source_run(run_dir)
    keras.utils.set_random_seed(seed)
    model, base, head = build(source, augment, weights_dir)
    unfrozen = unfreeze(base, unfreeze_top, unfreeze_from)
    table = layer_table(model, base)
    summary = {"source": str(source.dir), "unfrozen": unfrozen, "first_unfrozen": base.layers[-unfrozen].name
               if unfrozen else None, "augment": str(augmentation.parse(augment)), **table}
    if dry_run:
        return summary

    size = int(source.features["input_size"])
    data = _splits(source, data_dir, size, stream)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    with passes_end_quietly():
        start = model.evaluate(**data["val"].keras(batch_size), verbose=0, return_dict=True)[monitor[len("val_"):]]
        start_weights = model.get_weights()
        stop = keras.callbacks.EarlyStopping(monitor, patience=patience, restore_best_weights=True)
        t = time.perf_counter()
        train = data["train"].keras(batch_size, np.random.default_rng(seed))
        history = model.fit(**train, validation_data=data["val"].validation(batch_size), epochs=epochs,
                            shuffle="y" in train, callbacks=[stop], verbose=0).history
        fit_seconds = round(time.perf_counter() - t, 3)
    sign = 1 if monitor == "val_accuracy" else -1
    best = int(np.argmax(sign * np.array(history[monitor])))
    kept = best + 1
    if sign * history[monitor][best] <= sign * start:  # no epoch beat the frozen head: keep it
        model.set_weights(start_weights)
        kept = 0

    history = {k: [float(v) for v in vs] for k, vs in history.items()}
    record = {"from_run": str(source.dir.resolve()), "unfrozen": unfrozen, "first_unfrozen": summary["first_unfrozen"],
              "trainable_params": table["trainable_params"], "lr": lr, "epochs": epochs, "batch_size": batch_size,
              "patience": patience, "monitor": monitor, "augment": summary["augment"], "seed": seed,
              "data_dir": str(Path(data_dir or source.features["dataset_root"])),
              "epochs_trained": len(history["loss"]), "epoch_kept": kept, "start": start, "history": history}
    target = Path(out_dir) if out_dir else runs.new_run_dir(source.config["cache"], "dense-finetuned", runs_root)
    with runs.creating(target) as out:
        metrics, baseline = _write(out, model, base, head, source, data, fit_seconds, record)
    return {"run_dir": str(target), "metrics": metrics, "baseline": baseline, "fit_seconds": fit_seconds,
            "epochs_trained": len(history["loss"]), "epoch_kept": kept, "monitor": monitor, "start": start,
            "history": history, "skipped": record["skipped"], **summary}


def _write(out: Path, model, base, head, source: runs.Run, data: dict, fit_seconds: float,
           record: dict) -> tuple[dict, dict]:
    """The fine-tuned run into ``out`` (base weights, head, metrics, predictions, config with the fine-tuning
    ``record``, which gains ``skipped``: the photos found unreadable); returns its metrics and the frozen head's."""
    metrics, predictions = _evaluate(model, data, source.classes, record["batch_size"])
    record["skipped"] = [item for photos in data.values() for item in photos.skipped()]
    for m in metrics.values():
        m["fit_seconds"] = fit_seconds
    weights_file = out / "base.weights.h5"
    with replacing(weights_file) as tmp:
        base.save_weights(tmp)
    with replacing(out / "head.keras") as tmp:
        head.save(tmp)
    with replacing(out / "head.npz") as tmp:
        np.savez(tmp, **network_arrays(head))  # predict's head without Keras
    features = dict(source.features, weights=weights_file.name,  # relative: the run dir can move
                    weights_sha256=file_sha256(weights_file))
    baseline = source.metrics() if (source.dir / "metrics.json").is_file() else {}
    config = dict(source.config, features=features, fingerprint=fingerprint(features), created=utc_now(),
                  finetune=record)
    runs.write_json(out / "baseline.json", baseline)
    runs.write_run(out, config, metrics, predictions, source.classes, record["history"])
    return metrics, baseline

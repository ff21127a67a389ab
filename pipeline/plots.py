"""PNG figures of a run: confusion matrices per split and, for ``dense``, the training curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _literal(text: str) -> str:
    """``text`` shown as written: matplotlib reads ``$...$`` as mathematics (``cheap_$5_$10`` would crash it)."""
    return text.replace("$", r"\$")


def confusion_png(path: Path, matrices: dict[str, list[list[int]]], classes: list[str]) -> Path:
    """One panel per split: rows are the true classes, columns the predicted ones."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    side = 1.2 + 0.5 * len(classes)
    fig, axes = plt.subplots(1, len(matrices), figsize=(side * len(matrices) + 1, side + 1), squeeze=False)
    for ax, (split, matrix) in zip(axes[0], matrices.items()):
        ConfusionMatrixDisplay(np.array(matrix), display_labels=[_literal(c) for c in classes]).plot(ax=ax, colorbar=False,
                                                                               xticks_rotation="vertical")
        ax.set_title(split)
    _save(fig, path)
    return path


def curves_png(path: Path, history: dict[str, list[float]]) -> Path:
    """Loss and accuracy per epoch, train and val."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, label in (("", "train"), ("val_", "val")):
            values = history.get(prefix + metric)
            if values:
                ax.plot(range(1, len(values) + 1), values, label=label)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
    _save(fig, path)
    return path


def _save(fig, path: Path) -> None:
    """Lay out, write (atomically) and close ``fig``."""
    from .atomic import replacing

    fig.tight_layout()
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=100)
    _pyplot().close(fig)

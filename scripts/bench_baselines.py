"""What users would write instead of ``transfer extract``: the two baselines of ``bench_extract.py``'s headline table.

Both run once per split folder (``train/``, ``val/``, ... or the root when it holds the class folders) and
return how many images they computed, so the caller divides the total by the total time.

* ``tutorial_loop``: the feature-extraction loop of the Keras tutorials (Deep Learning with Python, VGG16 at
  150 px): ``ImageDataGenerator(rescale=1./255).flow_from_directory(...)``, ``conv_base.predict`` on every
  batch of 20, each result copied into a preallocated array. Keras 3.15 dropped
  ``keras.preprocessing.image.ImageDataGenerator``; TensorFlow still ships it as
  ``tf.keras.preprocessing.image.ImageDataGenerator`` (Keras's legacy copy), which is what this uses.
* ``plain_keras``: ``keras.utils.image_dataset_from_directory`` + ``model.predict`` of the assembled model
  (the backbone's preprocessing as layers, then the base) over the whole dataset.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

TUTORIAL_BATCH = 20
SPLIT_NAMES = {"train", "val", "validation", "test"}


def split_folders(root: str | Path) -> list[Path]:
    """The split folders under ``root``, or ``[root]`` when the class folders sit directly in it."""
    root = Path(root)
    splits = sorted(d for d in root.iterdir() if d.is_dir() and d.name.lower() in SPLIT_NAMES)
    return splits or [root]


def tutorial_loop(model, folders: list[Path], size: int) -> int:
    """The tutorials' loop over every folder; returns the number of images computed."""
    import numpy as np
    import tensorflow as tf

    datagen = tf.keras.preprocessing.image.ImageDataGenerator(rescale=1.0 / 255)
    total = 0
    for folder in folders:
        with contextlib.redirect_stdout(io.StringIO()):  # "Found N images belonging to C classes."
            generator = datagen.flow_from_directory(str(folder), target_size=(size, size),
                                                    batch_size=TUTORIAL_BATCH, class_mode="sparse", shuffle=False)
        count = generator.samples
        features = np.zeros((count, *model.output_shape[1:]), np.float32)
        labels = np.zeros(count)
        i = 0
        for inputs_batch, labels_batch in generator:
            features_batch = model.predict(inputs_batch, verbose=0)
            features[i * TUTORIAL_BATCH:(i + 1) * TUTORIAL_BATCH] = features_batch
            labels[i * TUTORIAL_BATCH:(i + 1) * TUTORIAL_BATCH] = labels_batch
            i += 1
            if i * TUTORIAL_BATCH >= count:
                break
        total += count
    return total


def plain_keras(model, folders: list[Path], size: int, batch_size: int) -> int:
    """``image_dataset_from_directory`` + ``model.predict`` (preprocessing inside the model) over every folder;
    returns the number of images."""
    import keras

    total = 0
    for folder in folders:
        with contextlib.redirect_stdout(io.StringIO()):
            ds = keras.utils.image_dataset_from_directory(str(folder), image_size=(size, size),
                                                          batch_size=batch_size, shuffle=False)
        count = len(ds.file_paths)
        features = model.predict(ds.map(lambda x, y: x), verbose=0)
        assert len(features) == count
        total += count
    return total

"""Decode and resize one image file to RGB uint8, never raising: failures come back as a reason.

Pillow reads every format we accept (JPEG, PNG, GIF first frame, BMP, WebP), converts any mode
(grayscale, palette, RGBA, CMYK, 16-bit) to RGB, decodes large JPEGs at reduced scale (DCT
scaling) before one bilinear resize, and refuses decompression bombs before allocating them.
:func:`decode_batches` is the one loop that decodes many files (stage one, prediction, fine-tuning,
previews); on two cores it fed the forward pass 3 to 15% faster than a tf.data ``numpy_function`` map
(``scripts/bench_levers.py``).
"""

from __future__ import annotations

import os
import stat
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

AHEAD = 2  # batches decoded ahead of the consumer: enough to hide decoding behind inference
MAX_PIXELS = 100_000_000  # more than any camera photo; a bigger image is refused unread
Image.MAX_IMAGE_PIXELS = None  # our own check below gives the reason; Pillow's would raise
ImageFile.LOAD_TRUNCATED_IMAGES = False


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr * (255.0 / peak), 0, 255).astype(np.uint8)).convert("RGB")
    if im.mode in ("P", "PA", "LA", "RGBA") and ("transparency" in im.info or im.mode.endswith("A")):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


READ_FAILED = "cannot read file"  # the machine failed (an I/O error), not the file: tried again next run
NO_MEMORY = "not enough memory to decode this image"  # likewise


def transient(reason: str) -> bool:
    """Whether a failure of :func:`load_image` came from the machine (memory, I/O) rather than the file's bytes:
    such a failure is reported but not remembered, so the next run tries the file again."""
    return reason.startswith((READ_FAILED, NO_MEMORY))


def load_image(path: str, size: int) -> tuple[np.ndarray | None, str]:
    """``(pixels (size, size, 3) uint8, "")`` or ``(None, reason)`` for a file that cannot be used (see
    :func:`transient` for which reasons are the machine's)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # opening a pipe would wait forever
            return None, "not a regular file (a pipe, socket or device)"
    except OSError as exc:
        return None, f"{READ_FAILED}: {exc.strerror or exc}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                width, height = im.size
                if width * height > MAX_PIXELS:
                    return None, (f"image is {width}x{height} ({width * height / 1e6:.0f} megapixels), over the "
                                  f"{MAX_PIXELS / 1e6:.0f} megapixel limit: likely a decompression bomb")
                if im.format == "JPEG":
                    im.draft("RGB", (size, size))  # DCT scaling: decode at 1/2, 1/4 or 1/8 when still >= size
                im.seek(0)  # first frame of an animation
                rgb = _to_rgb(im)
                if rgb.size != (size, size):
                    rgb = rgb.resize((size, size), Image.BILINEAR)
                return np.asarray(rgb, dtype=np.uint8), ""
    except UnidentifiedImageError:
        return None, "not an image Pillow can read (wrong extension, HTML or text saved as an image, or unsupported format)"
    except Image.DecompressionBombError as exc:
        return None, f"decompression bomb: {exc}"
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:  # the system's error (EIO, ESTALE), not Pillow's
            return None, f"{READ_FAILED}: {exc.strerror or exc}"
        text = str(exc) or type(exc).__name__
        if "truncated" in text.lower() or isinstance(exc, EOFError):
            return None, f"truncated or damaged image data ({text})"
        return None, f"cannot decode image ({text})"
    except MemoryError:
        return None, NO_MEMORY
    except Exception as exc:  # a crafted file can trip any error inside a decoder: one file must not stop the run
        return None, f"damaged image data ({type(exc).__name__}: {exc})"


@dataclass
class Batch:
    """Decoded images in file order: ``pixels[j]`` is file ``index[j]``, black where ``reasons`` says why not."""

    pixels: np.ndarray  # (n, size, size, 3) uint8
    index: list[int]
    reasons: dict[int, str]  # file index -> why it could not be used


def decode_batches(files: Sequence[str], size: int, batch: int = 32, ahead: int = AHEAD,
                   transform: Callable[[int, np.ndarray], np.ndarray] | None = None) -> Iterator[Batch]:
    """Batches of ``files`` decoded by :func:`load_image` on one thread per core (Pillow releases the GIL),
    at most ``ahead`` batches ahead of the consumer, so memory stays flat in N. ``transform(i, pixels)``
    may change each decoded image (an augmented view)."""

    def load(i: int) -> tuple[np.ndarray, str]:
        pixels, reason = load_image(files[i], size)
        if pixels is None:
            return np.zeros((size, size, 3), np.uint8), reason
        return (transform(i, pixels) if transform else pixels), ""

    def collect(idx: list[int], results) -> Batch:
        loaded = list(results)
        return Batch(np.stack([p for p, _ in loaded]), idx, {i: r for i, (_, r) in zip(idx, loaded) if r})

    with ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="decode") as pool:
        pending: deque = deque()
        for first in range(0, len(files), batch):
            idx = list(range(first, min(first + batch, len(files))))
            pending.append((idx, pool.map(load, idx)))
            if len(pending) > ahead:
                yield collect(*pending.popleft())
        for idx, results in pending:
            yield collect(idx, results)


def decode_all(files: Sequence[str], size: int) -> tuple[np.ndarray, list[int], dict[int, str]]:
    """``(pixels of the readable files, their indices, {index: reason} for the others)``, all in memory."""
    pixels, kept, reasons = [], [], {}
    for b in decode_batches(files, size):
        reasons.update(b.reasons)
        good = [j for j, i in enumerate(b.index) if i not in b.reasons]
        pixels.append(b.pixels[good])
        kept += [b.index[j] for j in good]
    stacked = np.concatenate(pixels) if pixels else np.zeros((0, size, size, 3), np.uint8)
    return stacked, kept, reasons

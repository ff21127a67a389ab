"""Thumbnails and contact sheets: rows of pictures with captions, one PNG per duplicate finding and one per
ranked list (label issues, outliers)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from ..atomic import replacing
from ..images import MAX_PIXELS
from . import LISTS
from .duplicates import KINDS

THUMB = 192
PAD = 8
LINE = 16
BACKGROUND = (255, 255, 255)
PLACEHOLDER = (220, 220, 220)
GRID = 6


def thumbnail(path: Path, px: int = THUMB) -> Image.Image:
    """The picture shrunk to fit ``px`` x ``px`` (RGB); a grey square saying why when it cannot be read
    (missing, not a regular file such as a pipe, too many pixels, not an image)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ValueError("not a regular file")
        with Image.open(path) as im:
            if im.size[0] * im.size[1] > MAX_PIXELS:
                raise ValueError("too many pixels")
            im.draft("RGB", (px, px))
            im = ImageOps.exif_transpose(im).convert("RGB")
            im.thumbnail((px, px))
            return im
    except Exception as exc:  # any unreadable file becomes a placeholder, never a crash
        im = Image.new("RGB", (px, px), PLACEHOLDER)
        reason = "missing" if isinstance(exc, FileNotFoundError) else "unreadable"
        ImageDraw.Draw(im).text((PAD, px // 2), reason, fill=(90, 90, 90), font=ImageFont.load_default(14))
        return im


def contact_sheet(items: list[tuple[Path, list[str]]], title: str, px: int = THUMB, columns: int = 0) -> Image.Image:
    """Thumbnails with caption lines under each, below a title, ``columns`` to a row (0: one row)."""
    font = ImageFont.load_default(12)
    lines = max((len(c) for _, c in items), default=0)
    cell_w, cell_h = px + 2 * PAD, px + PAD + lines * LINE + PAD
    columns = min(columns or len(items), len(items)) or 1
    rows = -(-len(items) // columns) or 1
    sheet = Image.new("RGB", (columns * cell_w, 2 * LINE + rows * cell_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, PAD // 2), title, fill=(0, 0, 0), font=ImageFont.load_default(14))
    for k, (path, caption) in enumerate(items):
        x, y = (k % columns) * cell_w + PAD, 2 * LINE + (k // columns) * cell_h
        thumb = thumbnail(path, px)
        sheet.paste(thumb, (x + (px - thumb.width) // 2, y + (px - thumb.height) // 2))
        for n, text in enumerate(caption):
            draw.text((x, y + px + PAD // 2 + n * LINE), _fit(draw, text, font, px), fill=(30, 30, 30), font=font)
    return sheet


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """Cut the start of ``text`` (keeping the file name end) until it fits ``width`` pixels."""
    while len(text) > 4 and draw.textlength(text, font=font) > width:
        text = "..." + text[4:]
    return text


def caption(finding: dict) -> list[str]:
    """Caption lines of a label issue or an outlier: where it is, what it is filed as, its score."""
    if finding.get("suggested"):
        return [f"{finding['split']} / {finding['class']} -> {finding['suggested']}", finding["path"],
                f"p(label wrong) {finding['score']:.2f}"]
    return [f"{finding['split']} / {finding['class']}", finding["path"], f"{finding['score']:.2f} x typical distance"]


def write_sheets(found: dict, root: Path, out_dir: Path) -> list[str]:
    """``<out_dir>/<kind>-<nnn>.png`` for every duplicate group of an audit result, and
    ``<out_dir>/<list>.png`` (a grid, most suspicious first) for each non-empty ranked list;
    returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in KINDS:
        for n, group in enumerate(found[kind], 1):
            items = [(root / g["path"], [f"{g['split']} / {g['class']}", g["path"]]
                      + ([f"cosine {g['similarity']:.3f}"] if "similarity" in g else [])) for g in group]
            target = out_dir / f"{kind}-{n:03d}.png"
            with replacing(target) as tmp:
                contact_sheet(items, kind.replace("_", " ")).save(tmp)
            written.append(str(target))
    for name in LISTS:
        if found.get(name):
            target = out_dir / f"{name}.png"
            title = f"{name.replace('_', ' ')}, most suspicious first"
            with replacing(target) as tmp:
                contact_sheet([(root / x["path"], caption(x)) for x in found[name]], title, columns=GRID).save(tmp)
            written.append(str(target))
    return written

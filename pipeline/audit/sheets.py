"""Thumbnails and contact sheets: rows of pictures with captions, one PNG per group of copies and one grid per
kind of suspicious image (label issues, outliers).

Sheets are capped (:data:`SHEET_GROUPS` groups of each kind, :data:`GROUP_IMAGES` images a group,
:data:`SHEET_IMAGES` images a grid, the first in the
result's order), so an audit with thousands of findings draws in seconds; the audit's
result and the fix list stay complete.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterator

from PIL import Image, ImageDraw, ImageFont, ImageOps

from ..atomic import replacing
from ..images import MAX_PIXELS
from .kinds import FINDINGS, ImageKind, Kind

THUMB = 192
PAD = 8
LINE = 16
BACKGROUND = (255, 255, 255)
PLACEHOLDER = (220, 220, 220)
GRID = 6
SHEET_GROUPS = 50  # contact sheets drawn per group kind
SHEET_IMAGES = 96  # thumbnails in one image kind's grid (16 rows of GRID)
GROUP_IMAGES = 24  # thumbnails on one group's sheet (a placeholder copied 1,000 times is one group)


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


def copy_caption(image: dict) -> list[str]:
    """Caption lines of one image of a group of copies: where it is, its cosine for near copies."""
    return [f"{image['split']} / {image['class']}", image["path"]] + (
        [f"cosine {image['similarity']:.3f}"] if "similarity" in image else [])


def caption(kind: ImageKind, finding: dict) -> list[str]:
    """Caption lines of a suspicious image: where it is, what it is filed as (and the suggested class), its score."""
    suggested = f" -> {finding['suggested']}" if finding.get("suggested") else ""
    return [f"{finding['split']} / {finding['class']}{suggested}", finding["path"],
            kind.score_caption.format(finding["score"])]


def sheets(kind: Kind, findings: list, root: Path) -> Iterator[tuple[str, Image.Image]]:
    """``(file name, contact sheet)`` for the findings of one kind: ``<kind>-<nnn>.png`` per group of copies, or
    ``<kind>.png`` (a grid, most suspicious first) for a non-empty list of suspicious images; the first
    :data:`SHEET_GROUPS` groups (of each, the first :data:`GROUP_IMAGES` images), the first :data:`SHEET_IMAGES`
    images."""
    if isinstance(kind, ImageKind):
        if findings:
            items = [(root / x["path"], caption(kind, x)) for x in findings[:SHEET_IMAGES]]
            more = f" (the first {len(items)} of {len(findings)})" if len(findings) > len(items) else ""
            yield f"{kind.name}.png", contact_sheet(items, f"{kind.title}, most suspicious first{more}", columns=GRID)
        return
    for n, group in enumerate(findings[:SHEET_GROUPS], 1):
        items = [(root / g["path"], copy_caption(g)) for g in group[:GROUP_IMAGES]]
        more = f" (the first {len(items)} of {len(group)})" if len(group) > len(items) else ""
        yield f"{kind.name}-{n:03d}.png", contact_sheet(items, kind.title + more, columns=GRID * 2)


def write_sheets(found: dict, root: Path, out_dir: Path) -> list[str]:
    """The contact sheets of every kind of finding in an audit result, in ``out_dir``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in FINDINGS.values():
        for name, sheet in sheets(kind, found.get(kind.name, []), root):
            target = out_dir / name
            with replacing(target) as tmp:
                sheet.save(tmp)
            written.append(str(target))
    return written

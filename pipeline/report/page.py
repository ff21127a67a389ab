"""One self-contained HTML page comparing run directories: every picture embedded as a data URI.

The page holds the table of heads (backbone, head, val and test accuracy, fit time), each run's
training curves and confusion matrices, its most confidently misclassified val/test images, and the
audit of every feature file the runs were trained on: duplicates and leakage, a 2-D map of the features,
label issues and outliers. It needs no network and opens from disk.
"""

from __future__ import annotations

import base64
import html
import io
import os
import stat
from pathlib import Path

from ..atomic import write_text
from ..audit.kinds import NEAR_COPY_COSINE, group_kinds, image_kinds, listing
from ..config import utc_now
from ..errors import PipelineError

THUMB = 128
SHOWN = 20  # groups of copies, and images of each suspicious kind, on the page (--json and the fix list: all)
SHOWN_COPIES = 12  # images shown of one group of copies
STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}
th{background:#eef}tr.best td{background:#efe}img.plot{max-width:100%}
.grid{display:flex;flex-wrap:wrap;gap:10px}.card{width:140px;font-size:12px;word-wrap:break-word}
.card img{display:block;width:128px;height:128px;object-fit:contain;background:#f4f4f4}
.group{display:flex;gap:10px;padding:8px 0;border-bottom:1px solid #eee}.wrong{color:#b00}
"""


def data_uri(payload: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def image_uri(path: Path) -> str:
    """A JPEG thumbnail of a photo as a data URI (a grey placeholder when the file cannot be read)."""
    from ..audit.sheets import thumbnail

    buffer = io.BytesIO()
    thumbnail(path, THUMB).save(buffer, format="JPEG", quality=80)
    return data_uri(buffer.getvalue(), "image/jpeg")


def _card(path: Path, lines: list[str], css: str = "") -> str:
    caption = "<br>".join(html.escape(x) for x in lines)
    return f'<div class="card {css}"><img src="{image_uri(path)}" alt="{html.escape(path.name)}">{caption}</div>'


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png(path: Path, alt: str) -> str:
    """A figure of a run directory, embedded only if it is a regular file (not a link) holding PNG bytes:
    a run directory from someone else must not smuggle other files into a page meant to be mailed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        payload = fh.read()
    if not payload.startswith(PNG_SIGNATURE):
        return ""
    return f'<p><img class="plot" src="{data_uri(payload, "image/png")}" alt="{html.escape(alt)}"></p>'


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def misclassified(run, top: int) -> list[dict]:
    """The ``top`` val/test images predicted wrong with the highest probability, from predictions-*.csv."""
    wrong = []
    for split in ("val", "test"):
        for row in run.predictions(split):
            if row["predicted"] != row["true"]:
                p = row["probabilities"]
                wrong.append({"split": split, "path": row["path"], "true": row["true"], "predicted": row["predicted"],
                              "probability": p[row["predicted"]], "p_true": p[row["true"]]})
    return sorted(wrong, key=lambda w: -w["probability"])[:top]


def _where(w: dict) -> str:
    """The image's path, prefixed by its split unless the path already starts with it."""
    return w["path"] if w["path"].startswith(w["split"] + "/") else f"{w['split']}: {w['path']}"


def _run_section(run, metrics: dict, top: int) -> str:
    root = Path(run.features.get("dataset_root") or ".")
    parts = [f'<h2 id="{html.escape(run.dir.name)}">{html.escape(run.dir.name)}</h2>',
             _png(run.dir / "curves.png", "training curves"), _png(run.dir / "confusion.png", "confusion matrices")]
    wrong = misclassified(run, top)
    if wrong:
        parts.append(f"<h3>Most confidently misclassified ({len(wrong)} shown)</h3><div class=grid>")
        parts += [_card(root / w["path"], [_where(w), f"true {w['true']} ({w['p_true']:.2f})",
                                           f"predicted {w['predicted']} ({w['probability']:.2f})"], "wrong")
                  for w in wrong]
        parts.append("</div>")
    elif any(s in metrics for s in ("val", "test")):
        parts.append("<p>No val/test image is misclassified.</p>")
    return "\n".join(p for p in parts if p)


def _showing(shown: int, total: int, what: str, cache: str) -> str:
    """The line under a capped gallery: how many of how many it shows, and where the rest are."""
    if shown >= total:
        return ""
    return (f"<p>Showing {shown:,} of {total:,} {what}; all of them: <code>transfer audit {html.escape(cache)} "
            "--json</code> or <code>--fix-list fixes.csv</code>.</p>")


def _audit_section(cache: str, root: Path, threshold: float, shown: int) -> str:
    from ..audit import audit_cache
    from ..audit.sheets import copy_caption

    title = f"<h2>Audit of {html.escape(Path(cache).name)}</h2>"
    if not Path(cache).is_file():
        return title + f"<p>{html.escape(cache)} is gone; rerun `transfer extract` to audit it.</p>"
    found = audit_cache(cache, threshold)
    parts = [title, f"<p>{found['images']} images; near copies at cosine &ge; {threshold}.</p>"]
    for kind in group_kinds():
        groups = found[kind.name]
        parts.append(f"<h3>{kind.title}: {len(groups)}</h3>")
        for group in groups[:shown]:
            cards = [_card(root / g["path"], copy_caption(g)) for g in group[:SHOWN_COPIES]]
            more = f"<p>... and {len(group) - SHOWN_COPIES} more copies</p>" if len(group) > SHOWN_COPIES else ""
            parts.append(f'<div class="group">{"".join(cards)}{more}</div>')
        parts.append(_showing(min(shown, len(groups)), len(groups), "groups", cache))
    return "\n".join(p for p in parts + [_findings_section(cache, root, found, shown)] if p)


def _findings_section(cache: str, root: Path, found: dict, shown: int) -> str:
    """The map of the features with the suspicious images marked, then a gallery of each image kind."""
    from .map import cache_map_png

    where = " and ".join(found["splits"])
    marks = [f"{k.marks} mark {k.title}" if not n else f"{k.marks} {k.title}" for n, k in enumerate(image_kinds())]
    parts = [f"<h3>Map of the features</h3><p>Each dot is an image, coloured by its class folder; "
             f"{listing(marks)} (searched in {where}).</p>",
             f'<p><img class="plot" src="{data_uri(cache_map_png(cache, found), "image/png")}" alt="feature map"></p>']
    for kind in image_kinds():
        listed = found[kind.name]
        parts.append(f"<h3>{kind.title}: {len(listed)}</h3>"
                     f"<p>Most suspicious first; score: {kind.score_explained}.</p>")
        cards = [_card(root / x["path"], [x["path"], f"given {x['class']}"]
                       + ([f"suggested {x['suggested']}"] if x["suggested"] else [])
                       + [f"score {x['score']:.2f}"], "wrong" if x["suggested"] else "") for x in listed[:shown]]
        parts.append(f'<div class="grid">{"".join(cards)}</div>' if cards else "<p>None found.</p>")
        parts.append(_showing(len(cards), len(listed), "images", cache))
    parts.append(f"<p>To act on them: <code>transfer audit {html.escape(cache)} --fix-list fixes.csv</code>, review the "
                 "action column, then <code>transfer relabel DATA_DIR fixes.csv</code>.</p>")
    return "\n".join(p for p in parts if p)


def _heads_table(rows: list[tuple]) -> str:
    best = max((r[1].get("val", {}).get("accuracy") or -1 for r in rows), default=-1)
    out = ["<table><tr><th>run</th><th>backbone</th><th>head</th><th>val accuracy</th><th>test accuracy</th>"
           "<th>fit seconds</th></tr>"]
    for run, metrics in rows:
        f = run.features
        val, test = metrics.get("val", {}).get("accuracy"), metrics.get("test", {}).get("accuracy")
        seconds = next((m.get("fit_seconds") for m in metrics.values()), None)
        css = ' class="best"' if val is not None and val == best else ""
        out.append(f'<tr{css}><td><a href="#{html.escape(run.dir.name)}">{html.escape(run.dir.name)}</a></td>'
                   f"<td>{html.escape(str(f.get('backbone')))} {html.escape(str(f.get('input_size')))} px, "
                   f"{html.escape(str(f.get('pooling')))}</td>"
                   f"<td>{html.escape(run.config['head'])}</td><td>{_pct(val)}</td><td>{_pct(test)}</td>"
                   f"<td>{'-' if seconds is None else f'{seconds:.2f}'}</td></tr>")
    return "\n".join(out + ["</table>"])


def write_report(run_dirs: list[str | os.PathLike], output: str | os.PathLike = "report.html",
                 threshold: float = NEAR_COPY_COSINE, top: int = 12, shown: int = SHOWN) -> dict:
    """Write one HTML page comparing ``run_dirs`` (each made by ``transfer train`` or ``compare``).

    ``top``: misclassified images shown per run; ``shown``: groups of copies, and images of each suspicious kind,
    shown per feature file (the page says how many of how many; the audit's ``--json`` and fix list hold all).

    Returns ``{"report", "runs", "caches", "bytes"}``.

    Examples
    --------
    >>> write_report(["runs/a", "runs/b"], "report.html")   # doctest: +SKIP
    """
    from ..runs import open_run

    if not run_dirs:
        raise PipelineError("give at least one run directory (made by `transfer train` or `transfer compare`)")
    rows = [(run, run.metrics()) for run in map(open_run, run_dirs)]
    caches = {}
    for run, _ in rows:
        caches.setdefault(run.config["cache"], Path(run.features.get("dataset_root") or "."))

    stamp = utc_now()
    body = [f"<h1>Transfer report</h1><p>{len(rows)} run(s), written {stamp}.</p>", _heads_table(rows)]
    body += [_run_section(run, metrics, top) for run, metrics in rows]
    body += [_audit_section(cache, root, threshold, shown) for cache, root in caches.items()]
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Transfer report</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    out = Path(output)
    write_text(out, page)
    return {"report": str(out), "runs": len(rows), "caches": list(caches), "bytes": len(page.encode())}

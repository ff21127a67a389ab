"""Near-blank photos: frames with almost nothing in them (a lens cap, an overexposed shot, an empty scan).

A blank frame lights few of the backbone's feature channels: on urban_rural (MobileNet 0.25, 96 px) three
uniform frames (grey, white, dark, pixel noise 2) had 8-10% of their pooled channels above zero, the median
photo 58% and every photo at least 25%. The score is the median image's share over the image's: how many
times fewer channels it lights; images scoring :data:`FLAGGED` or more are listed.
"""

from __future__ import annotations

import numpy as np

from .kinds import Search

ACTIVE = 1e-3  # a channel above this counts as lit
FLAGGED = 3.0


def find(search: Search) -> dict[str, list]:
    """The audit's entry point (:mod:`pipeline.audit.kinds`): the near-blank images of ``search.rows``."""
    rows = search.rows.originals()
    if not len(rows.images):
        return {"blank_photos": []}
    lit = (rows.vectors > ACTIVE).mean(axis=1)
    scores = np.median(lit) / np.maximum(lit, 1e-6)
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= FLAGGED]
    return {"blank_photos": [{**rows.images[i].as_dict(), "suggested": None, "score": round(float(scores[i]), 4)}
                             for i in order]}

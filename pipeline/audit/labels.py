"""Label issues: images whose given class is probably wrong, from out-of-fold probabilities.

A logistic regression on the cached features predicts every image from folds that did not see it
(cross-validation over the audited splits together; an image's augmented views and byte-identical copies
stay in its fold, and only the images themselves are scored). Confident learning (``cleanlab``) then
estimates how often each class is filed as each other class and flags the images that explain those
counts. Two rounds: the second fits the folds without the images the first flagged, so wrong labels
do not teach the head their mistake, and re-scores every image.

Each finding's ``score`` is ``1 - p(given class)`` out of fold: the probability that the label is wrong;
``suggested`` is the most probable other class.
"""

from __future__ import annotations

import numpy as np

from .._blas import one_blas_thread
from .directions import top_directions
from .kinds import Search
from .vectors import Rows

FOLDS = 20
LARGE = 5_000  # above this many scored images, LARGE_FOLDS on LARGE_DIMS principal components: each fold's
LARGE_FOLDS = 5  # head already sees plenty, and 20 folds x 2 rounds on all 1,280 features took over 120 s of CPU
LARGE_DIMS = 256  # at 20k images (most of an hour at 100k)
PCA_SAMPLE = 5_000  # rows the principal components are computed from
BLOCK = 4096
C = 0.01
ROUNDS = 2


def group_folds(y: np.ndarray, groups: np.ndarray, folds: int, seed: int = 0):
    """``(fit_rows, held_out)`` per fold: stratified folds of the groups (each labelled by its first row), each
    row in its group's fold. What ``StratifiedGroupKFold`` guarantees, in a time linear in the rows (its search
    for balanced folds took a sixth of a 100k-image audit)."""
    from sklearn.model_selection import StratifiedKFold

    names, first, group = np.unique(groups, return_index=True, return_inverse=True)
    fold_of = np.empty(len(names), int)
    for k, (_, held) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed).split(first, y[first])):
        fold_of[held] = k
    fold = fold_of[group]
    return [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(folds)]


@one_blas_thread
def out_of_fold(X: np.ndarray, y: np.ndarray, groups: np.ndarray, score_rows: np.ndarray,
                train_rows: np.ndarray | None = None, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Class probabilities ``(len(score_rows), C)`` for the scored rows, each from a head that did not see
    its group; heads train on the ``train_rows`` (all rows by default) of the other folds.

    Examples
    --------
    >>> P = out_of_fold(X, y, groups=sha256, score_rows=np.flatnonzero(view == 0))   # doctest: +SKIP
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_classes = int(y.max()) + 1
    usable = np.ones(len(y), bool) if train_rows is None else np.isin(np.arange(len(y)), train_rows)
    per_class = min(len(np.unique(groups[y == c])) for c in range(n_classes))
    folds = max(2, min(folds, per_class))
    if len(y) > LARGE:
        splits = group_folds(y, groups, folds, seed)
    else:
        splits = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(X, y, groups)
    proba = np.zeros((len(y), n_classes))
    head = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, warm_start=True))
    for fit_rows, held_out in splits:
        fit_rows = fit_rows[usable[fit_rows]]
        # start from the previous fold's solution (folds differ little), unless a class is missing here
        head.set_params(logisticregression__warm_start=len(np.unique(y[fit_rows])) == n_classes)
        head.fit(X[fit_rows], y[fit_rows])
        proba[np.ix_(held_out, head[-1].classes_)] = head.predict_proba(X[held_out])
    return proba[score_rows]


def components(X: np.ndarray, dims: int, seed: int = 0) -> np.ndarray:
    """``(N, dims)`` float32: the standardized rows on their first ``dims`` principal components (computed from
    :data:`PCA_SAMPLE` rows by :func:`~pipeline.audit.directions.top_directions`), in blocks of rows, so memory
    holds one block of standardized rows at a time."""
    mean = np.mean(X, axis=0, dtype=np.float64)
    squares = sum(((X[s:s + BLOCK] - mean) ** 2).sum(axis=0) for s in range(0, len(X), BLOCK))
    scale = np.sqrt(squares / len(X))
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    mean = mean.astype(np.float32)
    fit_rows = np.sort(np.random.default_rng(seed).choice(len(X), min(PCA_SAMPLE, len(X)), replace=False))
    sample = (X[fit_rows] - mean) / scale
    basis = top_directions(sample - sample.mean(axis=0), dims)
    return np.concatenate([((X[s:s + BLOCK] - mean) / scale) @ basis for s in range(0, len(X), BLOCK)])


def find_label_issues(rows: Rows, classes: list[str], folds: int | None = None, rounds: int = ROUNDS,
                      seed: int = 0) -> list[dict]:
    """Images (view 0 of ``rows``) whose label confident learning flags, most likely wrong first.

    Each finding is ``{"path", "split", "class", "suggested", "score"}``; an empty list when a class
    has fewer than two images (nothing to cross-validate). ``folds``: :data:`FOLDS`, or :data:`LARGE_FOLDS`
    above :data:`LARGE` images.

    Examples
    --------
    >>> find_label_issues(read_rows(f, augmented=True).in_splits(("train", "val")), f.classes)[0]  # doctest: +SKIP
    {'path': 'train/ants/1473187633_63ccaacea6.jpg', 'split': 'train', 'class': 'ants', 'suggested': 'bees', 'score': 0.95}
    """
    from cleanlab.filter import find_label_issues as confident_learning

    present, y = np.unique(rows.labels, return_inverse=True)
    groups = np.unique([e.sha256 for e in rows.images], return_inverse=True)[1]
    scored = np.flatnonzero(rows.views == 0)
    if len(present) < 2 or min(len(np.unique(groups[y == c])) for c in range(len(present))) < 2:
        return []
    folds = folds or (FOLDS if len(scored) <= LARGE else LARGE_FOLDS)
    X = rows.vectors if len(scored) <= LARGE else components(rows.vectors, LARGE_DIMS)
    keep = np.ones(len(y), bool)
    for _ in range(rounds):
        proba = out_of_fold(X, y, groups, scored, np.flatnonzero(keep), folds, seed)
        flagged = confident_learning(y[scored], proba, filter_by="prune_by_noise_rate", n_jobs=1)
        keep = ~np.isin(groups, groups[scored[flagged]])
    given = y[scored]
    wrong = 1.0 - proba[np.arange(len(scored)), given]
    others = proba.copy()
    others[np.arange(len(scored)), given] = -1.0
    found = [{**rows.images[scored[i]].as_dict(), "suggested": classes[present[others[i].argmax()]],
              "score": round(float(wrong[i]), 4)} for i in np.flatnonzero(flagged)]
    return sorted(found, key=lambda d: (-d["score"], d["path"]))


def find(search: Search) -> dict[str, list]:
    """The audit's entry point (:mod:`pipeline.audit.kinds`): :func:`find_label_issues` in ``search.rows``."""
    return {"label_issues": find_label_issues(search.rows, search.classes)}

"""Stage-two classifiers behind the scikit-learn estimator API, one module per head.

``pipeline/heads/<name>.py`` holds the :class:`~pipeline.heads.base.Head` subclass called ``<name>``:
its options, fitting, save/load and export layers. Adding such a module adds a head to ``transfer train
--head`` and ``transfer compare``; nothing else lists the heads. ``base`` and modules whose names start
with ``_`` (shared helpers) are not heads.

Hyperparameters are chosen on the val split when one is given (the head is then fitted on train only),
otherwise by cross-validation on train, with ``groups`` (the image hash) keeping the augmented views of
one image in one fold. Fitted state is saved without pickle: ``head.keras`` (loaded with
``safe_mode=True``) or plain arrays in ``head.npz`` (``allow_pickle=False``).

This module imports neither scikit-learn nor TensorFlow until a head is asked for, so the CLI can list
the heads cheaply.

Examples
--------
>>> head = make_head("logreg").fit(X_train, y_train, X_val, y_val)     # doctest: +SKIP
>>> head.score(X_test, y_test)                                         # doctest: +SKIP
0.97
"""

from __future__ import annotations

import importlib
import pkgutil

from ..errors import PipelineError
from ._options import CLASS_WEIGHT

CLASS_WEIGHTS = (None, *CLASS_WEIGHT.choices)
FIRST = ("logreg", "dense", "svm", "knn")  # how tables list the first heads; any other follows by name


def names() -> list[str]:
    """The heads there are: the modules of this package but ``base`` and ``_``-prefixed ones, unimported."""
    found = [m.name for m in pkgutil.iter_modules(__path__)
             if not m.ispkg and m.name != "base" and not m.name.startswith("_")]
    return sorted(found, key=lambda n: (FIRST.index(n) if n in FIRST else len(FIRST), n))


def head_class(name: str) -> type:
    """The ``Head`` subclass called ``name``, imported from ``pipeline.heads.<name>``."""
    if name not in names():
        raise PipelineError(f"unknown head {name!r}; choose one of: {', '.join(names())}")
    from .base import Head

    module = importlib.import_module(f"{__name__}.{name}")
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, Head) and getattr(value, "name", None) == name:
            return value
    raise PipelineError(f"{module.__file__} defines no Head subclass with name = {name!r}")


def options() -> dict:
    """Every head's command-line options (:class:`~pipeline.heads._options.Option`), by head; imports the heads."""
    return {name: head_class(name).options() for name in names()}


def make_head(name: str, **options):
    """The head called ``name`` with ``options``; options another head takes are refused by name."""
    cls = head_class(name)
    known = cls().get_params()
    wrong = [k for k in options if k not in known]
    if wrong:
        flags = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise PipelineError(f"{flags} does not apply to --head {name} (it takes: {', '.join(sorted(known))})")
    if options.get("class_weight") not in CLASS_WEIGHTS:
        raise PipelineError(f"--class-weight {options['class_weight']!r} is not supported; use balanced")
    return cls(**options)

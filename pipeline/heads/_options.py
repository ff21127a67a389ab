"""How a head declares its options: one ``__init__`` parameter each, annotated ``Annotated[type, Option(help)]``.

The parameter gives the option its name and default (where scikit-learn reads them too), the annotation
its type; :class:`Option` adds the help and the values accepted. ``transfer train`` and ``compare`` turn
every declared option into a flag; parameters without an ``Option`` are not on the command line.

Examples
--------
>>> class Head:                                                                       # doctest: +SKIP
...     def __init__(self, dropout: Annotated[float, Option("dropout rate", low=0, high=1, high_open=True)] = 0.5):
...         self.dropout = dropout
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Option:
    """A head's option: ``help`` and the values accepted (``low``/``high`` bounds, ``choices``, or a
    ``folder`` path); ``name``, ``default`` and ``type`` come from the ``__init__`` parameter it annotates
    (``type`` given here when the command line takes another type than the parameter, e.g. ``str``)."""

    help: str
    low: float | None = None
    high: float | None = None
    high_open: bool = False
    choices: tuple[str, ...] = ()
    folder: bool = False
    type: type | None = None
    name: str = ""
    default: Any = None


def declared(cls: type) -> tuple[Option, ...]:
    """The options of ``cls.__init__``, in parameter order, with their name, default and type filled in."""
    hints = typing.get_type_hints(cls.__init__, include_extras=True)
    found = []
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        base, *extras = typing.get_args(hints.get(name)) or (None,)
        for spec in (e for e in extras if isinstance(e, Option)):
            found.append(replace(spec, name=name, default=parameter.default, type=spec.type or _plain(base)))
    return tuple(found)


def _plain(annotation) -> type:
    """``float`` of ``float`` or ``float | None``."""
    return next((a for a in typing.get_args(annotation) if a is not type(None)), annotation)


CLASS_WEIGHT = Option("weigh classes inversely to their size", choices=("balanced",))  # the heads that weigh classes

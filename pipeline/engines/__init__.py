"""Execution engines for stage one: same protocol (:class:`Engine`), same loop (:mod:`.loop`), same features.

An engine only decides where the stage-one loop runs. Each engine is a module here defining ``ENGINE`` (its
class), ``OPTIONS`` (the options only it takes, as :class:`EngineOption`) and ``check(**options)`` (fail
fast, before hashing); adding one is that module plus one line in :data:`ENGINES`. Engine modules import
nothing heavy at module level: the CLI reads their options.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import PipelineError
from .base import Engine, EngineOption, FrozenBase, Outcome

ENGINES = ("local", "ray")  # module names under pipeline.engines


def _module(name: str) -> ModuleType:
    if name not in ENGINES:
        raise PipelineError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
    return importlib.import_module(f"{__name__}.{name}")


def options() -> dict[str, tuple[EngineOption, ...]]:
    """Every engine's own options, by engine."""
    return {name: _module(name).OPTIONS for name in ENGINES}


def check(name: str, **given) -> None:
    """Refuse an unknown engine, options it does not take (naming their engine), or a missing extra."""
    module = _module(name)
    own = {o.name for o in module.OPTIONS}
    wrong = [k for k, v in given.items() if v is not None and k not in own]
    if wrong:
        flags = {o.name: (o.flag, engine) for engine, opts in options().items() for o in opts}
        names = " and ".join(flags[k][0] if k in flags else k for k in wrong)
        engine = flags[wrong[0]][1] if wrong[0] in flags else "another engine"
        raise PipelineError(f"{names} appl{'ies' if len(wrong) == 1 else 'y'} only to --engine {engine}")
    module.check(**{k: v for k, v in given.items() if v is not None})


def create(name: str, job: FrozenBase, **given) -> Engine:
    """The engine called ``name`` for ``job``, with its own options."""
    check(name, **given)
    return _module(name).ENGINE(job, **{k: v for k, v in given.items() if v is not None})


__all__ = ["ENGINES", "Engine", "EngineOption", "FrozenBase", "Outcome", "check", "create", "options"]

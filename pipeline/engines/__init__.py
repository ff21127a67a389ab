"""Execution engines for stage one: same interface, same features."""

from __future__ import annotations

from .base import Job, Outcome

ENGINES = ("local",)


def create(name: str, job: Job):
    """The engine called ``name`` for ``job``."""
    if name == "local":
        from .local import LocalEngine

        return LocalEngine(job)
    from ..errors import PipelineError

    raise PipelineError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")


__all__ = ["ENGINES", "Job", "Outcome", "create"]

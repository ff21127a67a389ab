"""Execution engines for stage one: same interface, same features."""

from __future__ import annotations

from .base import Job, Outcome

ENGINES = ("local", "ray")


def check(name: str, address: str | None = None, workers: int | None = None) -> None:
    """Fail fast, before hashing: an unknown engine, options it does not take, or a missing extra."""
    from ..errors import PipelineError

    if name not in ENGINES:
        raise PipelineError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")
    if name != "ray" and (address or workers):
        raise PipelineError("--ray-address and --workers apply only to --engine ray")
    if workers is not None and workers < 1:
        raise PipelineError("--workers must be at least 1")
    if name == "ray":
        from .ray import require_ray

        require_ray()


def create(name: str, job: Job, address: str | None = None, workers: int | None = None):
    """The engine called ``name`` for ``job`` (``address`` and ``workers`` are for ``ray``)."""
    if name == "local":
        from .local import LocalEngine

        return LocalEngine(job)
    if name == "ray":
        from .ray import RayEngine

        return RayEngine(job, address, workers or 1)
    from ..errors import PipelineError

    raise PipelineError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}")


__all__ = ["ENGINES", "Job", "Outcome", "check", "create"]

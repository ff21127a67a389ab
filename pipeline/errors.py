"""Errors meant for people: the CLI prints their message in one line, without a traceback."""


class PipelineError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


class CacheLocked(PipelineError):
    """Another run is writing the same feature file."""


class InvalidInput(PipelineError, ValueError):
    """Data an estimator cannot learn from: a ``ValueError`` as scikit-learn's conventions expect."""

"""The HTML report: one self-contained page comparing run directories."""

from .page import write_report

__all__ = ["write_report"]

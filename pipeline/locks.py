"""Lock files that name their holder: opened without following links, stamped with the holder's pid, host and
start time, so a process that finds the lock taken can say who has it."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from .errors import PipelineError


def open_lock(lock_path: Path) -> int:
    """A descriptor on ``lock_path``, created if missing; a link there is refused, never followed (it could
    make this process create or truncate a file elsewhere)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError:
        if os.path.islink(lock_path):
            raise PipelineError(f"the lock file {lock_path} is a link; remove it and rerun") from None
        raise


def holder(fd: int) -> str:
    """Who holds the lock on ``fd``, as its holder stamped it."""
    return os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"


def stamp(fd: int) -> None:
    """Record this process as the holder of the lock on ``fd``."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)

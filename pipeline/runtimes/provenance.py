"""Who may have written a file of the model cache. As ssh does with ``~/.ssh`` (StrictModes) and git with a
repository owned by someone else (``safe.directory``), a file is this user's own only when it and its folder
are not links, belong to this user (or root), and no one else can write them: not others, and not a group other
than this user's private one (``umask 002`` systems give each user a group of their own). Anything else may
have been written, or swapped in, by another account, and is not trusted for what its sidecar claims.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path


def foreign_writer(*paths: Path) -> str:
    """Why someone other than this user or root could have written one of ``paths`` or their folders ('' when
    no one else could)."""
    for path in [p for path in paths for p in (path, path.parent)]:
        try:
            info = os.lstat(path)
        except OSError as exc:
            return f"{path} cannot be read ({exc.strerror or exc})"
        if stat.S_ISLNK(info.st_mode):
            return f"{path} is a link"
        if info.st_uid not in (os.geteuid(), 0):
            return f"{path} belongs to {_user(info.st_uid)}"
        sticky_folder = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX  # others cannot replace files
        if info.st_mode & stat.S_IWOTH and not sticky_folder:
            return f"{path} is writable by everyone"
        if info.st_mode & stat.S_IWGRP and not _private_group(info.st_gid) and not sticky_folder:
            return f"{path} is writable by group {_group(info.st_gid)}"
    return ""


def _user(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"user id {uid}"


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _private_group(gid: int) -> bool:
    """Whether ``gid`` is this user's own group: named after the user, with no other member."""
    try:
        me, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(gid)
    except KeyError:
        return False
    return group.gr_name == me and set(group.gr_mem) <= {me}

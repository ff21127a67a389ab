"""The one way the project writes a file (or folder) outside the feature-file commit: whole or not at all, and
never through a link that someone else planted.

A file is first created beside its destination under an unpredictable name, with ``O_CREAT | O_EXCL |
O_NOFOLLOW`` (so nothing already at that name, a link least of all, is opened), written, checked to be still
this user's own regular file with no other name, fsynced, and moved over the destination with ``os.replace``:
a destination that is a link is replaced by the new file, never written through. ``replace=False`` publishes only where nothing is yet
(for files a person reviewed). A folder is replaced only when it holds exactly what its earlier write listed in
its marker file; anything else in it is a reason to refuse, never to delete.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from .errors import PipelineError

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def temporary_name(path: Path) -> Path:
    """An unpredictable hidden sibling of ``path`` that ends as ``path`` does (``.weights.h5``, ``.npz``), so
    libraries that choose a format by suffix still do."""
    suffixes = "".join(path.suffixes[-2:])
    stem = path.name[:len(path.name) - len(suffixes)] if suffixes else path.name
    return path.with_name(f".{stem}.tmp-{secrets.token_hex(8)}{suffixes}")


def _create(path: Path) -> Path:
    """A new empty temporary file beside ``path``, with the umask's permissions as any file the user writes."""
    for _ in range(16):
        tmp = temporary_name(path)
        try:
            os.close(os.open(tmp, _CREATE, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def _sync_written(tmp: Path, path: Path) -> None:
    """fsync ``tmp`` after checking it is still this process's own file: a regular file (not a link) of this
    user with no other name (not a hard link to someone's file). A writer may replace it (an atomic writer
    inside this one does), but no one else can have put another file there."""
    try:
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        fd = -1
    try:
        info = os.fstat(fd) if fd >= 0 else None
        if info is None or not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_nlink != 1:
            raise PipelineError(f"the temporary file for {path} was replaced while it was written; {path} was "
                                "left as it was (is someone else writing that folder?)")
        os.fsync(fd)
    finally:
        if fd >= 0:
            os.close(fd)


def _sync_folder(folder: Path) -> None:
    """fsync a folder, so a rename in it survives a power cut (where the filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def replacing(path: str | os.PathLike, replace: bool = True) -> Iterator[Path]:
    """Yield a new temporary path beside ``path``; once the block has written it, it replaces ``path``.

    A failure (a full disk, an exception) leaves ``path`` as it was and removes the temporary file. With
    ``replace=False`` an existing ``path`` (a link included) is left alone and :class:`FileExistsError` raised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create(path)
    try:
        yield tmp
        _sync_written(tmp, path)
        if replace:
            os.replace(tmp, path)
        else:
            _publish_new(tmp, path)
        _sync_folder(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _publish_new(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the name ``path`` only where nothing is yet: a hard link fails, atomically, where anything
    is; on a filesystem without hard links, a check just before ``os.replace``."""
    try:
        os.link(tmp, path, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.replace(tmp, path)


@contextmanager
def writing(path: str | os.PathLike, replace: bool = True, newline: str | None = None) -> Iterator[IO[str]]:
    """A UTF-8 text file that replaces ``path`` once the block has written it (see :func:`replacing`)."""
    with replacing(path, replace) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as fh:
            yield fh


def write_bytes(path: str | os.PathLike, data: bytes, replace: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`replacing`)."""
    with replacing(path, replace) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)


def write_text(path: str | os.PathLike, text: str, replace: bool = True) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically (see :func:`replacing`)."""
    write_bytes(path, text.encode("utf-8"), replace)


def umask() -> int:
    """This process's umask (read by setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _entries(folder: Path, marker: str) -> list[str]:
    """Every entry under ``folder`` but the top-level ``marker``, links not followed; folders end in ``/``."""
    found = []
    for top, dirs, files in os.walk(folder):
        rel = Path(top).relative_to(folder)
        found += [f"{(rel / d).as_posix()}/" for d in dirs]
        found += [(rel / f).as_posix() for f in files if not (top == str(folder) and f == marker)]
    return sorted(found)


def folder_problem(path: str | os.PathLike, marker: str) -> str:
    """Why :func:`replacing_folder` would refuse to replace ``path`` ('' when it may: it is absent, an empty
    folder, or holds exactly the entries its ``marker`` lists)."""
    path = Path(path)
    if not os.path.lexists(path):
        return ""
    if path.is_symlink() or not path.is_dir():
        return "it is a link or a file, not a folder"
    if not any(path.iterdir()):
        return ""
    try:
        listed = json.loads((path / marker).read_text(encoding="utf-8"))["entries"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return f"it has no readable {marker}"
    extra = sorted(set(_entries(path, marker)) - set(listed if isinstance(listed, list) else []))
    return f"it holds {extra[0]!r}, which that export did not write" if extra else ""


@contextmanager
def replacing_folder(path: str | os.PathLike, marker: str) -> Iterator[Path]:
    """Yield a new temporary folder beside ``path``; once the block has filled it, a ``marker`` file listing its
    entries is added and it takes the place of ``path``.

    An existing ``path`` is replaced only when :func:`folder_problem` allows it (else a :class:`PipelineError`,
    before and again at the swap); it is moved aside and deleted only after the new folder is in place. A
    failure leaves ``path`` as it was.

    Examples
    --------
    >>> with replacing_folder("exports/saved", ".transfer-export.json") as tmp:  # doctest: +SKIP
    ...     model.export(str(tmp), format="tf_saved_model")
    """
    path = Path(path)
    _refuse_unless_replaceable(path, marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    old: Path | None = None
    try:
        os.chmod(tmp, 0o777 & ~umask())
        yield tmp
        write_text(tmp / marker, json.dumps({"written_by": "transfer", "entries": _entries(tmp, marker)}, indent=1))
        _refuse_unless_replaceable(path, marker)
        if os.path.lexists(path):
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, old)  # over the empty folder just made
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                os.replace(old, path)
                old = None
            raise
        _sync_folder(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _refuse_unless_replaceable(path: Path, marker: str) -> None:
    if problem := folder_problem(path, marker):
        raise PipelineError(f"{path} was left as it was: {problem}; move it or pass a new folder")

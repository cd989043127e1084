"""Atomic file writes: write a temporary file beside the destination, then rename it.

An interrupted write never leaves a file that looks complete, and readers never see a
half-written one. The temporary file is flushed to disk (``fsync``) before the rename, so a
disk that fills up while the data are written back (``ENOSPC`` from ``fsync``, as on network
or quota-limited file systems) fails the write instead of leaving a truncated file; on any
failure the temporary file is removed and the destination keeps its old content.

Write errors a user can act on (disk full, quota, permissions, read-only file system) are
raised as ``OSError`` naming the *destination* (not the temporary file), and
:func:`write_error_message` turns them into the one line a command prints::

    error: cannot write runs/x/record.json: No space left on device
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: ``errno`` values of a write that failed because of the disk or the permissions, not a bug.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM,
                          errno.EROFS, errno.ENOTDIR, errno.EISDIR})


def _readable_by_all(path: str | os.PathLike) -> None:
    """Give a ``mkstemp`` file (mode 0600) the usual permissions ``0666 & ~umask``."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a written file's data to disk (raises the disk's error, e.g. ``ENOSPC``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename) to disk; best effort (some file systems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_write_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a disk-full or permission ``OSError`` (see :data:`WRITE_ERRNOS`)."""
    return isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS


def write_error_message(exc: BaseException, out: str | os.PathLike | None = None) -> str | None:
    """``"cannot write <path>: <reason>"`` for a write error (:func:`is_write_error`), else None.

    Args:
        exc: the exception.
        out: the folder the command writes; a permission error on a path outside it happened
            while reading, and says ``"cannot read <path>: <reason>"``.
    """
    if not is_write_error(exc):
        return None
    reason = exc.strerror or os.strerror(exc.errno)
    if not exc.filename:
        return f"cannot write: {reason}"
    verb = "write"
    if out is not None and exc.errno in (errno.EACCES, errno.EPERM):
        target, folder = Path(exc.filename).absolute(), Path(out).absolute()
        if target != folder and not target.is_relative_to(folder):
            verb = "read"
    return f"cannot {verb} {exc.filename}: {reason}"


def with_destination(exc: OSError, path: str | os.PathLike) -> OSError:
    """The write error ``exc`` re-made to name ``path`` (the destination the user asked for)."""
    if not is_write_error(exc):
        return exc
    return OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


def check_writable(folder: str | os.PathLike) -> None:
    """Raise the ``OSError`` a write into ``folder`` would meet, creating nothing.

    ``folder`` need not exist: then its nearest existing ancestor is probed (with a
    temporary file, removed at once), so a missing folder that could be created passes.
    Root ignores permission bits, but not a read-only file system.

    Raises:
        OSError: naming ``folder`` (``EACCES``, ``EROFS``, ``ENOTDIR``, ...).
    """
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    try:
        fd, name = tempfile.mkstemp(prefix=".write-probe-", dir=probe)
    except OSError as exc:
        raise with_destination(exc, folder) from None
    os.close(fd)
    os.unlink(name)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; rename it to ``path`` if the block succeeds.

    The temporary file is fsynced before the rename. On any exception (including
    KeyboardInterrupt) the temporary file is removed and the destination is left as it was; a
    write error (:func:`is_write_error`) is re-raised naming ``path``.
    """
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".tmp", dir=path.parent)
    except OSError as exc:
        raise with_destination(exc, path) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        fsync_path(tmp)
        _readable_by_all(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        renamed = with_destination(exc, path)
        if renamed is exc:
            raise
        raise renamed from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)

"""Atomic file writes: write a temporary file beside the destination, then rename it.

An interrupted write never leaves a file that looks complete, and readers never see a
half-written one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _readable_by_all(path: str | os.PathLike) -> None:
    """Give a ``mkstemp`` file (mode 0600) the usual permissions ``0666 & ~umask``."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; rename it to ``path`` if the block succeeds.

    On any exception (including KeyboardInterrupt) the temporary file is removed and the
    destination is left as it was.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _readable_by_all(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

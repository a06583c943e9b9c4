"""Files that survive a power cut: the directory fsync and the atomic replace that the store, the certificate store
and the key backends share (POSIX: a new or renamed entry is durable only once its directory is fsync'ed)."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["fsync_dir", "write_atomically"]


def fsync_dir(directory: Path, *, quiet: bool = False) -> None:
    """fsync ``directory`` so that a file created, renamed or unlinked in it stays so after a power cut.
    ``quiet``: a file system that cannot do it is ignored (best effort) instead of raising OSError."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        if quiet:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not quiet:
            raise
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Temp file in the same directory, fsync, rename over ``path``, fsync the directory: after a power cut the
    file is either the old one (or absent) or complete."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)

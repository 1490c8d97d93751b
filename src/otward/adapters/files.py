"""Replacing a file so that a reader, or a crash, sees the old content or the new, never a torn file.

One implementation for every file otward rewrites in place: the agent's state and chain,
the gateway's cached CRLs, the gatekeeper's bundle and state, the Mosquitto and OPC UA files.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` with ``data`` (``mode``, default private; ``owner`` as (uid, gid) if given).

    Temporary file in the same directory (created 0600, so nothing leaks before the mode is set),
    fsync, rename over ``path``, fsync of the directory so the rename itself survives a power cut.
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)

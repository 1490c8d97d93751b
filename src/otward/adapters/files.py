"""Files: replaced so that a reader, or a crash, sees the old content or the new, never a torn
file; and read with a size cap when a user names them.

One implementation for every file otward rewrites in place: the agent's state and chain,
the gateway's cached CRLs, the gatekeeper's bundle and state, the Mosquitto and OPC UA files.
And one for every input file a command reads (a CSR, a YAML model, a bundle, a key): read to
at most its limit, so that ``--csr /dev/zero`` is an error, not a process eating all memory.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from otward.errors import ConfigError, InvalidRequestError

__all__ = ["atomic_file", "format_size", "read_limited", "write_atomic"]


def format_size(size: int) -> str:
    """``65536`` → ``64 KiB``, ``1048576`` → ``1 MiB`` (for messages naming a limit)."""
    for unit, factor in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def read_limited(path: Path, limit: int, what: str) -> bytes:
    """The content of ``path`` (``what`` names it in errors), read to at most ``limit`` bytes: a
    larger file, or one that never ends, is refused (InvalidRequestError) without being read
    whole; an unreadable one is a ConfigError."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}", rule="file") from None
    if len(data) > limit:
        raise InvalidRequestError(
            f"{what} {path} is larger than {format_size(limit)}, the limit for it", rule="file-size"
        )
    return data


@contextlib.contextmanager
def atomic_file(
    path: Path, *, mode: int = 0o600, owner: tuple[int, int] | None = None, text: bool = False
) -> Iterator[IO[Any]]:
    """A file handle whose content replaces ``path`` only once the block ends without an error
    (``mode``, default private; ``owner`` as (uid, gid) if given; ``text`` for UTF-8 text).

    Temporary file in the same directory (created 0600, so nothing leaks before the mode is set),
    fsync, rename over ``path``, fsync of the directory so the rename itself survives a power cut.
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "w" if text else "wb", encoding="utf-8" if text else None) as handle:
            yield handle
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


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` with ``data``, whole or not at all (see :func:`atomic_file`)."""
    with atomic_file(path, mode=mode, owner=owner) as handle:
        handle.write(data)

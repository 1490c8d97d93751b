"""Secrets for notification channels, read from files that only their owner may read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from otward.errors import ConfigError

__all__ = ["read_secret_file"]

_LIMIT = 4096


def read_secret_file(path: Path, key: str) -> bytes:
    """The secret in ``path`` without its trailing line break; ConfigError naming ``key`` (the
    dotted config key) when it is missing, empty, too long, or readable by group or others."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}", rule="secret-file") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{key}: {path} is not a regular file", rule="secret-file")
        if mode & 0o077:
            raise ConfigError(
                f"{key}: {path} has mode {stat.S_IMODE(mode):04o}; a secret file must be readable by its "
                f"owner only (chmod 600 {path})",
                rule="secret-file-mode",
            )
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(_LIMIT + 1)
    finally:
        os.close(fd)
    secret = data.rstrip(b"\r\n")
    if len(data) > _LIMIT:
        raise ConfigError(f"{key}: {path} is longer than {_LIMIT} bytes", rule="secret-file")
    if not secret:
        raise ConfigError(f"{key}: {path} is empty", rule="secret-file")
    return secret

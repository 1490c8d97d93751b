"""The last audit head this installation signed, kept in the data directory.

Someone who can write the database but not the data directory can cut the trail
back to an earlier signed head and let the service sign on from there. This file
remembers how far this installation had signed, so the signer refuses to sign a
trail that no longer reaches it and ``otward audit verify`` reports it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from otward.errors import ConfigError

__all__ = ["WITNESS_FILE", "FileHeadWitness"]

WITNESS_FILE = "audit-head.json"

log = logging.getLogger("otward")


class FileHeadWitness:
    """Implements :class:`otward.services.audit.HeadWitness` with a JSON file replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def source(self) -> str:
        return f"the head this installation signed last ({self.path.name})"

    def load(self) -> tuple[int, bytes] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"{self.path} cannot be read: {exc.strerror}") from exc
        try:
            data = json.loads(text)
            sequence, head_hash = int(data["sequence"]), bytes.fromhex(data["hash"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{self.path} is not an audit head record") from exc
        if sequence < 1 or len(head_hash) != 32:
            raise ConfigError(f"{self.path} is not an audit head record")
        return sequence, head_hash

    def save(self, sequence: int, head_hash: bytes, *, rollback: bool = False) -> None:
        """Keep the newer of what is stored and ``sequence`` (a concurrent writer may still leave the
        older one: that is an earlier head of the same trail, a weaker but still true witness)."""
        try:
            if not rollback:
                current = self.load()
                if current is not None and current[0] >= sequence:
                    return
            text = json.dumps({"sequence": sequence, "hash": head_hash.hex()}) + "\n"
            fd, temporary = tempfile.mkstemp(prefix=".audit-head-", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                os.replace(temporary, self.path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except (OSError, ConfigError) as exc:
            # The head is signed and stored; only this host's witness of it is missing.
            log.warning("audit head witness %s not updated: %s", self.path, exc)

"""How many connections the process's open-file limit leaves room for.

Every connection holds a file descriptor (a proxied one two). A listener that runs out of them
fails ``accept()`` with EMFILE while the backlog keeps the listening socket readable, and every
other file the process opens (the database, a CRL, a log) fails too. Servers therefore raise the
soft limit towards the hard one at start-up (systemd's default soft limit is 1024, its hard limit
far higher) and keep their connection caps below what is left.
"""

from __future__ import annotations

import resource

__all__ = ["RESERVED_FILES", "connections_allowed"]

RESERVED_FILES = 128  # listeners, database, log, certificate and CRL files, subprocess pipes


def connections_allowed(wanted: int, *, files_per_connection: int = 1) -> int:
    """``wanted`` connections, or fewer if even the raised open-file limit leaves room for fewer.

    Raises the soft ``RLIMIT_NOFILE`` up to what ``wanted`` needs (never above the hard limit)."""
    needed = wanted * files_per_connection + RESERVED_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, (soft - RESERVED_FILES) // files_per_connection))

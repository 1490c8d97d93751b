"""uvicorn's log lines, once each: ``otward serve`` runs two uvicorn servers in one process (the HTTPS
API and the plain-HTTP CRL/OCSP port), and each announced its own start and stop, so every lifecycle
line ("Started server process [N]", "Shutting down", ...) was printed twice."""

from __future__ import annotations

import logging

__all__ = ["LIFECYCLE_MESSAGES", "OncePerProcess", "log_lifecycle_once"]

LIFECYCLE_MESSAGES = (
    "Started server process",
    "Waiting for application",
    "Application startup complete",
    "Shutting down",
    "Application shutdown complete",
    "Finished server process",
)


class OncePerProcess(logging.Filter):
    """Lets each uvicorn lifecycle line through once; everything else passes unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(LIFECYCLE_MESSAGES):
            return True
        if message in self._seen:
            return False
        self._seen.add(message)
        return True


def log_lifecycle_once() -> None:
    """Install :class:`OncePerProcess` on uvicorn's server logger (uvicorn's own logging setup keeps a
    logger's filters, so this holds for every server the process starts)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, OncePerProcess) for f in logger.filters):
        logger.addFilter(OncePerProcess())

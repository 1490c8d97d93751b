"""uvicorn's lifecycle lines once per process, whatever the number of servers in it."""

from __future__ import annotations

import logging

from otward.web.serverlog import OncePerProcess


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, message, args, None)


def test_each_lifecycle_line_passes_once_and_other_lines_always():
    once = OncePerProcess()
    assert once.filter(_record("Started server process [%d]", 42))
    assert not once.filter(_record("Started server process [%d]", 42))
    assert once.filter(_record("Shutting down"))
    assert not once.filter(_record("Shutting down"))
    for _ in range(2):
        assert once.filter(_record("Invalid HTTP request received."))

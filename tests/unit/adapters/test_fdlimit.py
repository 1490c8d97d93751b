"""The connection caps stay within the process's open-file limit."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])))
from otward.adapters.fdlimit import connections_allowed
allowed = connections_allowed(int(sys.argv[3]), files_per_connection=int(sys.argv[4]))
print(allowed, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def _run(soft: int, hard: int, wanted: int, per: int = 1) -> tuple[int, int]:
    """(connections allowed, soft limit afterwards), in a process of its own with those limits."""
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(soft), str(hard), str(wanted), str(per)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[0]), int(out[1])


def test_the_soft_limit_is_raised_as_far_as_the_connections_need():
    assert _run(256, 4096, 1000) == (1000, 1128)


def test_a_hard_limit_too_low_lowers_the_cap():
    assert _run(256, 512, 1000) == (384, 512)
    assert _run(256, 512, 1000, per=2) == (192, 512)  # the gateway: client and upstream sockets


def test_enough_room_changes_nothing():
    assert _run(4096, 4096, 100) == (100, 4096)

"""Which peers may say who the client is: ``X-Forwarded-For``/``-Proto`` from configured proxies only.

The source address is what the per-source limits count and what the audit trail records, so it must
come from the TCP connection unless the operator names the reverse proxies in front of the service
(``[server] trusted_proxies`` / ``--trusted-proxy``). uvicorn believes 127.0.0.1 by default: any local
client could then choose its own address, rotating it past every limit and writing forged sources
into the trail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["forwarded_headers"]


def forwarded_headers(trusted_proxies: Sequence[str]) -> dict[str, Any]:
    """uvicorn.Config settings: forwarded headers believed from ``trusted_proxies`` (validated by
    ``config.parse_trusted_proxies``), and not read at all when there is none."""
    proxies = list(dict.fromkeys(trusted_proxies))
    return {"proxy_headers": bool(proxies), "forwarded_allow_ips": proxies or None}

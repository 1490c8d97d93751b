"""Modbus/TCP Security gateway: a mutual-TLS terminator in front of plain devices (docs/gateway.md).

``tls`` builds the server context, ``revocation`` fetches, verifies and indexes
CRLs, ``identity`` reads who a client certificate names (and its Modbus role),
``audit`` records events, ``proxy`` accepts, admits and forwards; the Modbus frame and policy logic
is pure and lives in :mod:`otward.core.modbus`.
"""

from __future__ import annotations

from otward.gateway.audit import AuditWriter
from otward.gateway.proxy import Gateway, GatewayOptions, install_uvloop
from otward.gateway.revocation import RevocationChecker, StalePolicy
from otward.gateway.tls import load_trusted_certificates, server_context

__all__ = [
    "AuditWriter",
    "Gateway",
    "GatewayOptions",
    "RevocationChecker",
    "StalePolicy",
    "install_uvloop",
    "load_trusted_certificates",
    "server_context",
]

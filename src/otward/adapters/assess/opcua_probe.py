"""The OPC UA probe: GetEndpoints over an unsecured channel (as every OPC UA client does first) with
asyncua, recorded as plain :class:`OpcUaObservation` values.

Everything read from the server is bounded: the Hello asks for at most :data:`MAX_MESSAGE_BYTES` per
message, and the connection is cut when the server sends more than :data:`MAX_RECEIVED_BYTES` in all,
before asyncua parses it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

from otward.adapters.assess.tls_probe import TargetUnreachableError
from otward.core.assess.opcua import OpcUaEndpoint, OpcUaObservation, UserToken
from otward.errors import BackendError

__all__ = ["MAX_MESSAGE_BYTES", "MAX_RECEIVED_BYTES", "ProbeFailedError", "probe_opcua"]

MAX_MESSAGE_BYTES: Final = 1024 * 1024
MAX_RECEIVED_BYTES: Final = 4 * 1024 * 1024
_MAX_CHUNKS: Final = 64
_MODES: Final = {1: "None", 2: "Sign", 3: "SignAndEncrypt"}
_TOKENS: Final = {0: "Anonymous", 1: "UserName", 2: "Certificate", 3: "IssuedToken"}


class ProbeFailedError(BackendError):
    """The target accepted the connection but did not answer as the protocol expects."""


def _cap(protocol: Any, limit: int, on_exceeded: Callable[[], None]) -> None:
    """Cut the connection once the server has sent more than ``limit`` bytes (a hostile or broken server
    could otherwise make asyncua buffer a message of up to 4 GiB), and say so."""
    original = protocol.data_received
    received = [0]

    def data_received(data: bytes) -> None:
        received[0] += len(data)
        if received[0] > limit:
            protocol.transport.abort()
            on_exceeded()
            return
        original(data)

    protocol.data_received = data_received


async def _get_endpoints(client: Any) -> list[Any]:
    await client.send_hello()
    await client.open_secure_channel()
    try:
        return list(await client.get_endpoints())
    finally:
        await client.close_secure_channel()


async def probe_opcua(url: str, *, target: str, timeout: float, note: str | None = None) -> OpcUaObservation:
    """The endpoints the server at ``url`` announces; raises :class:`TargetUnreachableError` when no TCP
    connection opens and :class:`ProbeFailedError` when the server does not answer GetEndpoints."""
    from asyncua import Client

    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    client = Client(url, timeout=timeout)
    client.max_messagesize = MAX_MESSAGE_BYTES
    client.max_chunkcount = _MAX_CHUNKS
    try:
        await asyncio.wait_for(client.connect_socket(), timeout)
    except (OSError, TimeoutError) as exc:
        raise TargetUnreachableError(
            f"TCP connection to {target} failed: {getattr(exc, 'strerror', None) or exc or 'timed out'}"
        ) from None
    exchange = asyncio.ensure_future(_get_endpoints(client))
    exceeded: list[bool] = []

    def stop() -> None:
        exceeded.append(True)
        exchange.cancel()

    try:
        _cap(client.uaclient.protocol, MAX_RECEIVED_BYTES, stop)
        async with asyncio.timeout(timeout):
            described = await exchange
    except asyncio.CancelledError:
        if not exceeded:
            raise
        raise ProbeFailedError(
            f"{target} sent more than {MAX_RECEIVED_BYTES} bytes in answer to GetEndpoints; connection cut"
        ) from None
    except (TimeoutError, OSError, ConnectionError) as exc:
        raise ProbeFailedError(
            f"no GetEndpoints answer from {target} ({type(exc).__name__}: {exc or 'timed out'})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - asyncua raises many kinds (UaError, struct errors) on a bad answer
        raise ProbeFailedError(
            f"{target} answered, but not as an OPC UA server ({type(exc).__name__}: {exc})"
        ) from None
    finally:
        client.disconnect_socket()
    endpoints = tuple(
        OpcUaEndpoint(
            url=str(e.EndpointUrl or ""),
            security_policy_uri=str(e.SecurityPolicyUri or ""),
            security_mode=_MODES.get(int(e.SecurityMode), f"Invalid({int(e.SecurityMode)})"),
            user_tokens=tuple(
                UserToken(_TOKENS.get(int(t.TokenType), str(t.TokenType)), str(t.SecurityPolicyUri or ""))
                for t in (e.UserIdentityTokens or [])
            ),
            certificate=bytes(e.ServerCertificate or b""),
            application_uri=str(e.Server.ApplicationUri or "") if e.Server else "",
        )
        for e in described
    )
    return OpcUaObservation(target=target, endpoints=endpoints, note=note)

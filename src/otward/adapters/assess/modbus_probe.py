"""The Modbus probe: one harmless read (FC 3, Read Holding Registers, one register at address 0, unit 1;
never a write) with pymodbus, then — when no Modbus answer came — one TLS handshake, recorded as a
:class:`ModbusObservation`. Any Modbus reply, an exception response included, proves a plaintext
Modbus/TCP server. Modbus frames are at most 260 bytes, which pymodbus enforces.
"""

from __future__ import annotations

import logging
import socket

from otward.adapters.assess.tls_probe import TargetUnreachableError, tls_handshake
from otward.core.assess.modbus import ModbusObservation

__all__ = ["probe_modbus"]

_UNIT = 1


def _plaintext_read(host: str, port: int, timeout: float) -> str | None:
    from pymodbus.client import ModbusTcpClient
    from pymodbus.exceptions import ModbusException

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    client = ModbusTcpClient(host, port=port, timeout=timeout, retries=0)
    try:
        if not client.connect():  # type: ignore[no-untyped-call]
            return None
        reply = client.read_holding_registers(0, count=1, device_id=_UNIT)
    except (ModbusException, OSError, ValueError):
        return None
    finally:
        client.close()  # type: ignore[no-untyped-call]
    if reply.isError():
        code = getattr(reply, "exception_code", None)
        return f"FC 3 (read holding register 0, unit {_UNIT}) got a Modbus exception response (code {code})"
    values = len(reply.registers)
    return f"FC 3 (read holding register 0, unit {_UNIT}) answered in plaintext ({values} register)"


def probe_modbus(
    host: str, port: int, *, target: str, timeout: float, note: str | None = None
) -> ModbusObservation:
    """What the port at ``host:port`` answers; raises :class:`TargetUnreachableError` when no TCP
    connection opens."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise TargetUnreachableError(
            f"TCP connection to {target} failed: {exc.strerror or exc or 'timed out'}"
        ) from None
    plaintext = _plaintext_read(host, port, timeout)
    if plaintext is not None:
        return ModbusObservation(target, plaintext, note=note)
    handshake = tls_handshake(host, port, timeout=timeout)
    if handshake is None:
        return ModbusObservation(target, None, note=note)
    described, client_certificate = handshake
    return ModbusObservation(target, None, described, client_certificate, note=note)

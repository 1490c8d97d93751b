"""Modbus/TCP exposure: what a harmless read and a TLS handshake saw in, findings out.

Plain Modbus/TCP has no authentication and no integrity protection: whoever reaches the port can write
coils and registers. A port that answers a plaintext read is therefore **high** (CR 1.2, 3.1, 4.1,
NDR 1.13), whatever the network it sits on: a flat cell network is exactly where an attacker who got in
moves next. A port that answers TLS instead (Modbus/TCP Security, an otward gateway on 802) is reported
as protected, and as medium if it does not require client certificates (the Modbus/TCP Security
specification requires mutual TLS; the role travels in the client certificate).
"""

from __future__ import annotations

from dataclasses import dataclass

from otward.core.assess.findings import Finding, Severity

__all__ = ["ModbusObservation", "assess_modbus"]


@dataclass(frozen=True)
class ModbusObservation:
    """``plaintext`` describes the Modbus reply to the read (None: no Modbus answer); ``tls`` the TLS
    handshake (None: no TLS), ``tls_client_certificate`` whether the TLS server required one."""

    target: str
    plaintext: str | None
    tls: str | None = None
    tls_client_certificate: bool = False
    note: str | None = None


def assess_modbus(observation: ModbusObservation) -> list[Finding]:
    """The findings of one Modbus/TCP port."""
    note = f"{observation.note}: " if observation.note else ""
    host = observation.target.rsplit(":", 1)[0]
    findings = []
    if observation.plaintext is not None:
        findings.append(
            Finding(
                "modbus.plaintext",
                Severity.HIGH,
                observation.target,
                "Plaintext Modbus/TCP endpoint",
                note + observation.plaintext + " — no authentication, integrity or confidentiality: anyone "
                "who reaches the port can read and write.",
                "Front it with otward gateway (Modbus/TCP Security, mutual TLS with role-based access), e.g. "
                f"'otward gateway --listen 0.0.0.0:802 --upstream {host}:502 ...', and let only the gateway "
                "reach the device (firewall the plaintext port).",
                ("CR 1.2", "CR 3.1", "CR 4.1", "NDR 1.13"),
            )
        )
    elif observation.tls is not None:
        findings.append(
            Finding(
                "modbus.tls",
                Severity.INFO,
                observation.target,
                "Port answers TLS (Modbus/TCP Security or a gateway)",
                note
                + observation.tls
                + "; no plaintext Modbus answer. Assess its TLS with 'otward assess tls'.",
                "None; check the TLS configuration with otward assess tls.",
                ("CR 3.1", "CR 4.1"),
            )
        )
        if not observation.tls_client_certificate:
            findings.append(
                Finding(
                    "modbus.tls.no_client_auth",
                    Severity.MEDIUM,
                    observation.target,
                    "Modbus/TCP Security port without client certificates",
                    note + "the TLS session was accepted without a client certificate; Modbus/TCP Security "
                    "requires mutual TLS (the role comes from the client certificate).",
                    "Require client certificates from the plant's CA (otward gateway --trust CA.pem does).",
                    ("CR 1.2",),
                )
            )
    else:
        findings.append(
            Finding(
                "modbus.no_answer",
                Severity.LOW,
                observation.target,
                "Port open, but neither Modbus nor TLS answered",
                note + "the TCP connection was accepted; a Modbus read and a TLS handshake got no answer.",
                "Check what listens on this port; close it if nothing should.",
                ("CR 7.7",),
            )
        )
    return findings

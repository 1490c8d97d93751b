"""Modbus/TCP frames and the role policy of the Modbus/TCP Security gateway.

Pure functions only: bytes and parsed TOML in, decisions out. The gateway
(:mod:`otward.gateway.proxy`) reads MBAP frames off the wire, asks
:func:`request_ranges` which addresses a request touches and
:meth:`ModbusPolicy.decide` whether the client's role may touch them, and
answers a denied request with :func:`exception_response` itself.

Anything the parser cannot account for exactly (a protocol id other than 0, a
length outside 2..254, a PDU whose length does not match its function, a
quantity outside the limits of the Modbus Application Protocol v1.1b3) is a
:class:`~otward.errors.ParseError`: the gateway closes the connection rather
than guess what an upstream device would make of it.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from otward.errors import ConfigError, ParseError

__all__ = [
    "ADDRESS_FUNCTIONS",
    "ILLEGAL_FUNCTION",
    "MAX_FRAME",
    "MBAP_HEADER",
    "AddressRange",
    "Decision",
    "Grant",
    "MbapHeader",
    "ModbusPolicy",
    "exception_response",
    "parse_mbap_header",
    "parse_policy",
    "request_ranges",
]

MBAP_HEADER = 7  # transaction id (2), protocol id (2), length (2), unit id (1)
MAX_PDU = 253
MAX_FRAME = MBAP_HEADER + MAX_PDU  # 260 bytes: header (with unit id) + PDU
ILLEGAL_FUNCTION = 0x01

_HEADER = struct.Struct(">HHHB")
_TWO = struct.Struct(">HH")

#: Function codes whose address ranges the gateway computes; any other function is allowed
#: only when a role's entry lists it, and has no addresses to check.
ADDRESS_FUNCTIONS = frozenset({1, 2, 3, 4, 5, 6, 15, 16, 23})

# (minimum, maximum) quantity per function, from the Modbus Application Protocol v1.1b3.
_READ_LIMITS = {1: 2000, 2: 2000, 3: 125, 4: 125}
_WRITE_COILS_MAX = 0x07B0  # 1968
_WRITE_REGISTERS_MAX = 0x7B  # 123
_RW_READ_MAX = 0x7D  # 125
_RW_WRITE_MAX = 0x79  # 121


@dataclass(frozen=True)
class MbapHeader:
    """The fixed part of a Modbus/TCP frame; ``length`` counts the unit id and the PDU."""

    transaction_id: int
    unit_id: int
    length: int

    @property
    def pdu_length(self) -> int:
        return self.length - 1


def parse_mbap_header(data: bytes | bytearray | memoryview, offset: int = 0) -> MbapHeader:
    """The header at ``offset``; ParseError for a protocol id other than 0 or a length outside 2..254."""
    if len(data) - offset < MBAP_HEADER:
        raise ParseError("MBAP header is shorter than 7 bytes", rule="modbus-frame")
    transaction_id, protocol_id, length, unit_id = _HEADER.unpack_from(data, offset)
    if protocol_id != 0:
        raise ParseError(f"MBAP protocol id {protocol_id} is not 0 (Modbus)", rule="modbus-frame")
    if not 2 <= length <= MAX_PDU + 1:
        raise ParseError(f"MBAP length {length} is outside 2..{MAX_PDU + 1}", rule="modbus-frame")
    return MbapHeader(transaction_id, unit_id, length)


@dataclass(frozen=True, order=True)
class AddressRange:
    """Inclusive range of Modbus data addresses (0..65535) a request touches."""

    first: int
    last: int

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


def _range(start: int, quantity: int, maximum: int, function: int) -> AddressRange:
    if not 1 <= quantity <= maximum:
        raise ParseError(
            f"function {function}: quantity {quantity} outside 1..{maximum}", rule="modbus-quantity"
        )
    last = start + quantity - 1
    if last > 0xFFFF:
        raise ParseError(
            f"function {function}: range {start}+{quantity} passes address 65535", rule="modbus-quantity"
        )
    return AddressRange(start, last)


def _expect_length(pdu: bytes | bytearray | memoryview, length: int, function: int) -> None:
    if len(pdu) != length:
        raise ParseError(
            f"function {function}: PDU of {len(pdu)} bytes, expected {length}", rule="modbus-pdu"
        )


def request_ranges(pdu: bytes | bytearray | memoryview) -> tuple[AddressRange, ...]:
    """The address ranges a request PDU touches (empty for functions without addresses).

    ParseError when the PDU's length or byte count does not match its function, or a
    quantity is outside the protocol's limits.
    """
    if not 1 <= len(pdu) <= MAX_PDU:
        raise ParseError(f"PDU of {len(pdu)} bytes is outside 1..{MAX_PDU}", rule="modbus-pdu")
    function = pdu[0]
    if function in _READ_LIMITS:
        _expect_length(pdu, 5, function)
        start, quantity = _TWO.unpack_from(pdu, 1)
        return (_range(start, quantity, _READ_LIMITS[function], function),)
    if function in (5, 6):
        _expect_length(pdu, 5, function)
        (address,) = struct.unpack_from(">H", pdu, 1)
        return (AddressRange(address, address),)
    if function in (15, 16):
        if len(pdu) < 6:
            raise ParseError(f"function {function}: PDU of {len(pdu)} bytes is too short", rule="modbus-pdu")
        start, quantity = _TWO.unpack_from(pdu, 1)
        byte_count = pdu[5]
        if function == 15:
            result = _range(start, quantity, _WRITE_COILS_MAX, function)
            expected = (quantity + 7) // 8
        else:
            result = _range(start, quantity, _WRITE_REGISTERS_MAX, function)
            expected = 2 * quantity
        if byte_count != expected:
            raise ParseError(
                f"function {function}: byte count {byte_count} does not match quantity {quantity}",
                rule="modbus-pdu",
            )
        _expect_length(pdu, 6 + byte_count, function)
        return (result,)
    if function == 23:
        if len(pdu) < 10:
            raise ParseError(f"function 23: PDU of {len(pdu)} bytes is too short", rule="modbus-pdu")
        read_start, read_quantity, write_start, write_quantity = struct.unpack_from(">HHHH", pdu, 1)
        byte_count = pdu[9]
        read = _range(read_start, read_quantity, _RW_READ_MAX, function)
        write = _range(write_start, write_quantity, _RW_WRITE_MAX, function)
        if byte_count != 2 * write_quantity:
            raise ParseError(
                f"function 23: byte count {byte_count} does not match write quantity {write_quantity}",
                rule="modbus-pdu",
            )
        _expect_length(pdu, 10 + byte_count, function)
        return (read, write)
    if function == 0 or function >= 0x80:
        raise ParseError(f"function code {function} is not a request", rule="modbus-pdu")
    return ()


def exception_response(
    transaction_id: int, unit_id: int, function: int, code: int = ILLEGAL_FUNCTION
) -> bytes:
    """The whole frame of a Modbus exception response (function | 0x80, exception code)."""
    return _HEADER.pack(transaction_id, 0, 3, unit_id) + bytes((function | 0x80, code))


@dataclass(frozen=True)
class Grant:
    """One ``[[role.NAME]]`` entry: these function codes on addresses ``first..last``."""

    functions: frozenset[int]
    first: int
    last: int

    def covers(self, function: int, ranges: tuple[AddressRange, ...]) -> bool:
        return function in self.functions and all(
            self.first <= r.first and r.last <= self.last for r in ranges
        )


@dataclass(frozen=True)
class Decision:
    """Whether a request is allowed; ``reason`` says why not, in audit-friendly words."""

    allowed: bool
    reason: str


_ALLOWED = Decision(True, "allowed")


@dataclass(frozen=True)
class ModbusPolicy:
    """Roles and their grants; anything not granted is denied."""

    roles: Mapping[str, tuple[Grant, ...]]

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def decide(self, role: str, function: int, ranges: tuple[AddressRange, ...]) -> Decision:
        """Allowed when one entry of the role lists ``function`` and holds every range whole."""
        grants = self.roles.get(role)
        if grants is None:
            return Decision(False, f"role '{role}' is not in the policy")
        for grant in grants:
            if grant.covers(function, ranges):
                return _ALLOWED
        if not any(function in grant.functions for grant in grants):
            return Decision(False, f"function {function} not granted to role '{role}'")
        return Decision(False, f"addresses {_ranges_text(ranges)} not granted to role '{role}'")


def _ranges_text(ranges: tuple[AddressRange, ...]) -> str:
    return ",".join(str(r) for r in ranges) or "-"


_ENTRY_KEYS = frozenset({"functions", "addresses"})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_grant(where: str, entry: object) -> Grant:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: must be a table with 'functions' and 'addresses'")
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: addresses, functions)")
    missing = sorted(_ENTRY_KEYS - set(entry))
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    functions = entry["functions"]
    if not isinstance(functions, list) or not functions:
        raise ConfigError(f"{where}.functions: must be a non-empty list of function codes")
    for code in functions:
        if not _is_int(code) or not 1 <= code <= 127:
            raise ConfigError(f"{where}.functions: {code!r} is not a function code in 1..127")
    addresses = entry["addresses"]
    if not isinstance(addresses, list) or len(addresses) != 2 or not all(_is_int(a) for a in addresses):
        raise ConfigError(f"{where}.addresses: must be [first, last], two integers")
    first, last = addresses
    if not 0 <= first <= last <= 0xFFFF:
        raise ConfigError(f"{where}.addresses: [{first}, {last}] is not a range within 0..65535")
    return Grant(frozenset(functions), first, last)


def parse_policy(document: Mapping[str, object]) -> ModbusPolicy:
    """Validate a parsed policy file (``tomllib.loads``) and build the policy.

    ConfigError names the dotted key that is wrong: unknown keys, function codes
    outside 1..127, address ranges that are not ``[first, last]`` within 0..65535.
    """
    unknown = sorted(set(document) - {"role"})
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {', '.join(unknown)} (allowed: role)")
    roles = document.get("role")
    if not isinstance(roles, Mapping) or not roles:
        raise ConfigError("role: the policy grants nothing; add [[role.NAME]] entries")
    result: dict[str, tuple[Grant, ...]] = {}
    for name, entries in roles.items():
        where = f"role.{name}"
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{where}: must be an array of tables ([[{where}]])")
        result[str(name)] = tuple(_parse_grant(f"{where}[{i}]", e) for i, e in enumerate(entries))
    return ModbusPolicy(result)

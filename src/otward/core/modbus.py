"""Modbus/TCP frames and the role policy of the Modbus/TCP Security gateway.

Pure functions only: bytes and parsed TOML in, decisions out. The gateway
(:mod:`otward.gateway.proxy`) reads MBAP frames off the wire, asks
:func:`request_ranges` which addresses a request touches and
:meth:`ModbusPolicy.decide` whether the client's role may touch them, and
answers a denied request with :func:`exception_response` itself.

How each function code addresses the data model is one table,
:data:`FUNCTION_CODES` (Modbus Application Protocol Specification V1.1b3, section 6):
every code that touches coils or registers yields its address ranges and is
checked against the policy; a code otward knows to carry no address (diagnostics,
device identification) yields none; a code not in the table has addressing otward
cannot check and passes only where the policy grants it as ``address_less``.

Anything the parser cannot account for exactly (a protocol id other than 0, a
length outside 2..254, a PDU whose length does not match its function, a
quantity outside the limits of the specification) is a
:class:`~otward.errors.ParseError`: the gateway closes the connection rather
than guess what an upstream device would make of it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeAlias

from otward.errors import ConfigError, ParseError

__all__ = [
    "ADDRESS_FUNCTIONS",
    "FUNCTION_CODES",
    "ILLEGAL_FUNCTION",
    "MAX_FRAME",
    "MBAP_HEADER",
    "AddressRange",
    "Decision",
    "FunctionCode",
    "Grant",
    "MbapHeader",
    "ModbusPolicy",
    "Ranges",
    "exception_response",
    "parse_mbap_header",
    "parse_policy",
    "ranges_text",
    "request_ranges",
]

MBAP_HEADER = 7  # transaction id (2), protocol id (2), length (2), unit id (1)
MAX_PDU = 253
MAX_FRAME = MBAP_HEADER + MAX_PDU  # 260 bytes: header (with unit id) + PDU
ILLEGAL_FUNCTION = 0x01

_HEADER = struct.Struct(">HHHB")
_ONE = struct.Struct(">H")
_TWO = struct.Struct(">HH")
_FOUR = struct.Struct(">HHHH")

_Pdu: TypeAlias = bytes | bytearray | memoryview


@dataclass(frozen=True)
class MbapHeader:
    """The fixed part of a Modbus/TCP frame; ``length`` counts the unit id and the PDU."""

    transaction_id: int
    unit_id: int
    length: int

    @property
    def pdu_length(self) -> int:
        return self.length - 1


def parse_mbap_header(data: _Pdu, offset: int = 0) -> MbapHeader:
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


#: The ranges a request touches: a tuple (empty for a function without addresses), or None
#: when otward cannot tell what the request addresses.
Ranges: TypeAlias = tuple[AddressRange, ...] | None


# -- request PDUs, one parser per addressing shape -------------------------------------------------
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


def _expect_length(pdu: _Pdu, length: int) -> None:
    if len(pdu) != length:
        raise ParseError(f"function {pdu[0]}: PDU of {len(pdu)} bytes, expected {length}", rule="modbus-pdu")


def _expect_at_least(pdu: _Pdu, length: int) -> None:
    if len(pdu) < length:
        raise ParseError(f"function {pdu[0]}: PDU of {len(pdu)} bytes is too short", rule="modbus-pdu")


def _read(maximum: int) -> Callable[[_Pdu], Ranges]:
    """Start address and quantity (FC 1, 2, 3, 4)."""

    def parse(pdu: _Pdu) -> Ranges:
        _expect_length(pdu, 5)
        start, quantity = _TWO.unpack_from(pdu, 1)
        return (_range(start, quantity, maximum, pdu[0]),)

    return parse


def _one_address(length: int) -> Callable[[_Pdu], Ranges]:
    """One address right after the function code, in a PDU of fixed length (FC 5, 6, 22, 24)."""

    def parse(pdu: _Pdu) -> Ranges:
        _expect_length(pdu, length)
        (address,) = _ONE.unpack_from(pdu, 1)
        return (AddressRange(address, address),)

    return parse


def _write_multiple(maximum: int, bytes_for: Callable[[int], int]) -> Callable[[_Pdu], Ranges]:
    """Start, quantity, byte count and the values (FC 15, 16)."""

    def parse(pdu: _Pdu) -> Ranges:
        _expect_at_least(pdu, 6)
        function = pdu[0]
        start, quantity = _TWO.unpack_from(pdu, 1)
        result = _range(start, quantity, maximum, function)
        byte_count = pdu[5]
        if byte_count != bytes_for(quantity):
            raise ParseError(
                f"function {function}: byte count {byte_count} does not match quantity {quantity}",
                rule="modbus-pdu",
            )
        _expect_length(pdu, 6 + byte_count)
        return (result,)

    return parse


def _read_write(pdu: _Pdu) -> Ranges:
    """FC 23: a read range and a write range, both touched."""
    _expect_at_least(pdu, 10)
    read_start, read_quantity, write_start, write_quantity = _FOUR.unpack_from(pdu, 1)
    read = _range(read_start, read_quantity, 0x7D, 23)
    write = _range(write_start, write_quantity, 0x79, 23)
    byte_count = pdu[9]
    if byte_count != 2 * write_quantity:
        raise ParseError(
            f"function 23: byte count {byte_count} does not match write quantity {write_quantity}",
            rule="modbus-pdu",
        )
    _expect_length(pdu, 10 + byte_count)
    return (read, write)


def _no_data(pdu: _Pdu) -> Ranges:
    """The function code alone (FC 7, 11, 12, 17)."""
    _expect_length(pdu, 1)
    return ()


def _diagnostics(pdu: _Pdu) -> Ranges:
    """FC 8: sub-function (2 bytes) and data of N x 2 bytes; no data address."""
    if len(pdu) < 3 or len(pdu) % 2 == 0:
        raise ParseError(
            f"function 8: PDU of {len(pdu)} bytes is not a sub-function and 2-byte data words",
            rule="modbus-pdu",
        )
    return ()


_READ_DEVICE_IDENTIFICATION = 0x0E


def _encapsulated(pdu: _Pdu) -> Ranges:
    """FC 43: Read Device Identification (MEI 14) has no address; other MEI types are not checked."""
    _expect_at_least(pdu, 2)
    if pdu[1] == _READ_DEVICE_IDENTIFICATION:
        _expect_length(pdu, 4)  # MEI type, read device id code, object id
        return ()
    return None  # MEI 13 (CANopen general reference) reaches an object dictionary otward cannot check


@dataclass(frozen=True)
class FunctionCode:
    """How one function code addresses the data model, and how its request PDU is checked.

    ``addressed``: the code touches coils or registers, so a grant's ``addresses`` apply to it.
    ``parse`` takes the whole request PDU (function code included) and returns the ranges it
    touches (empty: no address; None: addressing otward cannot check), or raises ParseError.
    """

    code: int
    name: str
    addressed: bool
    parse: Callable[[_Pdu], Ranges] = field(repr=False)


def _table(*codes: FunctionCode) -> Mapping[int, FunctionCode]:
    return MappingProxyType({c.code: c for c in codes})


#: The function codes whose addressing otward knows (Modbus Application Protocol V1.1b3, section 6).
#: Quantity limits: FC 1/2 2000 bits, FC 3/4 125 registers, FC 15 1968 coils, FC 16 123 registers,
#: FC 23 125 read and 121 written registers.
FUNCTION_CODES: Mapping[int, FunctionCode] = _table(
    FunctionCode(1, "read coils", True, _read(2000)),
    FunctionCode(2, "read discrete inputs", True, _read(2000)),
    FunctionCode(3, "read holding registers", True, _read(125)),
    FunctionCode(4, "read input registers", True, _read(125)),
    FunctionCode(5, "write single coil", True, _one_address(5)),
    FunctionCode(6, "write single register", True, _one_address(5)),
    FunctionCode(7, "read exception status", False, _no_data),
    FunctionCode(8, "diagnostics", False, _diagnostics),
    FunctionCode(11, "get comm event counter", False, _no_data),
    FunctionCode(12, "get comm event log", False, _no_data),
    FunctionCode(15, "write multiple coils", True, _write_multiple(0x07B0, lambda q: (q + 7) // 8)),
    FunctionCode(16, "write multiple registers", True, _write_multiple(0x7B, lambda q: 2 * q)),
    FunctionCode(17, "report server id", False, _no_data),
    FunctionCode(22, "mask write register", True, _one_address(7)),  # address, AND mask, OR mask
    FunctionCode(23, "read/write multiple registers", True, _read_write),
    FunctionCode(24, "read FIFO queue", True, _one_address(3)),  # the FIFO pointer address
    FunctionCode(43, "encapsulated interface transport", False, _encapsulated),
)

#: Function codes that touch coils or registers: always checked against a grant's addresses.
ADDRESS_FUNCTIONS = frozenset(code for code, spec in FUNCTION_CODES.items() if spec.addressed)
_PARSERS = {code: spec.parse for code, spec in FUNCTION_CODES.items()}  # the per-request look-up


def request_ranges(pdu: _Pdu) -> Ranges:
    """The address ranges a request PDU touches.

    Empty for a function without addresses; None for a function whose addressing otward
    does not know (not in :data:`FUNCTION_CODES`, or FC 43 other than Read Device
    Identification). ParseError when the PDU's length or byte count does not match its
    function, or a quantity is outside the protocol's limits.
    """
    if not 1 <= len(pdu) <= MAX_PDU:
        raise ParseError(f"PDU of {len(pdu)} bytes is outside 1..{MAX_PDU}", rule="modbus-pdu")
    function = pdu[0]
    parse = _PARSERS.get(function)
    if parse is not None:
        return parse(pdu)
    if function == 0 or function >= 0x80:
        raise ParseError(f"function code {function} is not a request", rule="modbus-pdu")
    return None


def exception_response(
    transaction_id: int, unit_id: int, function: int, code: int = ILLEGAL_FUNCTION
) -> bytes:
    """The whole frame of a Modbus exception response (function | 0x80, exception code)."""
    return _HEADER.pack(transaction_id, 0, 3, unit_id) + bytes((function | 0x80, code))


# -- the role policy -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grant:
    """One ``[[role.NAME]]`` entry.

    ``functions`` on ``addresses`` (every range a request touches must lie inside), and
    ``address_less`` function codes that pass without any address check.
    """

    functions: frozenset[int]
    addresses: AddressRange | None
    address_less: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Decision:
    """Whether a request is allowed; ``reason`` says why not, in audit-friendly words."""

    allowed: bool
    reason: str


_ALLOWED = Decision(True, "allowed")


@dataclass(frozen=True)
class _RoleIndex:
    """A role's grants by function code: the address bounds of each entry listing it."""

    bounds: Mapping[int, tuple[tuple[int, int], ...]]
    address_less: frozenset[int]


def _index(grants: tuple[Grant, ...]) -> _RoleIndex:
    bounds: dict[int, list[tuple[int, int]]] = {}
    address_less: set[int] = set()
    for grant in grants:
        address_less |= grant.address_less
        if grant.addresses is not None:
            for function in grant.functions:
                bounds.setdefault(function, []).append((grant.addresses.first, grant.addresses.last))
    return _RoleIndex({f: tuple(b) for f, b in bounds.items()}, frozenset(address_less))


@dataclass(frozen=True)
class ModbusPolicy:
    """Roles and their grants; anything not granted is denied."""

    roles: Mapping[str, tuple[Grant, ...]]
    _by_role: Mapping[str, _RoleIndex] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_role", {role: _index(g) for role, g in self.roles.items()})

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def decide(self, role: str, function: int, ranges: Ranges) -> Decision:
        """Allowed when the role grants ``function`` as address-less, or one entry lists it and
        holds every range whole; a request of unknown addressing (None) only in the first way."""
        index = self._by_role.get(role)
        if index is None:
            return Decision(False, f"role '{role}' is not in the policy")
        if function in index.address_less:
            return _ALLOWED
        if ranges is None:
            return Decision(
                False,
                f"function {function}: addressing unknown to otward, not granted as address_less "
                f"to role '{role}'",
            )
        bounds = index.bounds.get(function)
        if bounds is None:
            return Decision(False, f"function {function} not granted to role '{role}'")
        for first, last in bounds:
            for r in ranges:
                if r.first < first or r.last > last:
                    break
            else:
                return _ALLOWED
        return Decision(False, f"addresses {ranges_text(ranges)} not granted to role '{role}'")


def ranges_text(ranges: Ranges) -> str:
    """``0-9,100-100`` for the audit trail; ``-`` without addresses, ``unknown`` when unchecked."""
    if ranges is None:
        return "unknown"
    return ",".join(str(r) for r in ranges) or "-"


_ENTRY_KEYS = frozenset({"functions", "addresses", "address_less"})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_codes(where: str, codes: object) -> frozenset[int]:
    if not isinstance(codes, list) or not codes:
        raise ConfigError(f"{where}: must be a non-empty list of function codes")
    for code in codes:
        if not _is_int(code) or not 1 <= code <= 127:
            raise ConfigError(f"{where}: {code!r} is not a function code in 1..127")
    return frozenset(codes)


def _parse_addresses(where: str, addresses: object) -> AddressRange:
    if not isinstance(addresses, list) or len(addresses) != 2 or not all(_is_int(a) for a in addresses):
        raise ConfigError(f"{where}: must be [first, last], two integers")
    first, last = addresses
    if not 0 <= first <= last <= 0xFFFF:
        raise ConfigError(f"{where}: [{first}, {last}] is not a range within 0..65535")
    return AddressRange(first, last)


def _parse_grant(where: str, entry: object) -> Grant:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: must be a table with 'functions' and 'addresses', or 'address_less'")
    unknown = sorted(str(k) for k in set(entry) - _ENTRY_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (allowed: address_less, addresses, functions)"
        )
    if "functions" not in entry and "address_less" not in entry:
        raise ConfigError(f"{where}: grants nothing; needs 'functions' with 'addresses', or 'address_less'")
    functions: frozenset[int] = frozenset()
    addresses = None
    if "functions" in entry:
        if "addresses" not in entry:
            raise ConfigError(f"{where}: missing addresses")
        functions = _parse_codes(f"{where}.functions", entry["functions"])
        unknown_codes = sorted(functions - FUNCTION_CODES.keys())
        if unknown_codes:
            raise ConfigError(
                f"{where}.functions: otward does not know what function {unknown_codes[0]} addresses, "
                "so cannot check it against addresses; list it in address_less to let it pass unchecked"
            )
        addresses = _parse_addresses(f"{where}.addresses", entry["addresses"])
    elif "addresses" in entry:
        raise ConfigError(f"{where}.addresses: applies to 'functions', and this entry has none")
    address_less: frozenset[int] = frozenset()
    if "address_less" in entry:
        address_less = _parse_codes(f"{where}.address_less", entry["address_less"])
        addressed = sorted(address_less & ADDRESS_FUNCTIONS)
        if addressed:
            code = addressed[0]
            raise ConfigError(
                f"{where}.address_less: function {code} ({FUNCTION_CODES[code].name}) addresses "
                "coils or registers; list it in functions, with addresses"
            )
    return Grant(functions, addresses, address_less)


def parse_policy(document: Mapping[str, object]) -> ModbusPolicy:
    """Validate a parsed policy file (``tomllib.loads``) and build the policy.

    ConfigError names the dotted key that is wrong: unknown keys, function codes
    outside 1..127, address ranges that are not ``[first, last]`` within 0..65535,
    a code in ``functions`` whose addressing otward does not know, a code in
    ``address_less`` that touches coils or registers.
    """
    unknown = sorted(str(k) for k in set(document) - {"role"})
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

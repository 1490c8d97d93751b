"""Path identifiers and integer parameters, checked at the edge of the API.

A path segment arrives percent-decoded, so ``/devices/a%0A<86>1 .../attest`` hands a
route a device id with a newline in it; whatever a route passes on can reach the
audit trail and the exports made of it. Every route takes its path identifiers as
one of the types below: each checks the grammar the service uses
(:mod:`otward.core.identifiers`) before any handler, dependency or service runs, and
a mismatch is a 400 problem naming the parameter.

Every number a client sends in a path or query ends up a SQL parameter (an offset, a sequence,
a version, a tree size), and SQLite and PostgreSQL hold signed 64-bit integers: a larger one
failed deep in the driver with a 500. Each integer parameter of the API is a :data:`Count`
(narrowed further where the route has its own bounds), so anything beyond is a 400 naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import annotated_types
from fastapi import Path
from pydantic import AfterValidator

from otward.core.identifiers import (
    ACCESS_ID,
    CA_NAME,
    CREDENTIAL_ID,
    DEVICE_ID,
    EDGE_ID,
    GRANT_ID,
    SIGNER_NAME,
    Grammar,
)

__all__ = [
    "MAX_COUNT",
    "AccessId",
    "CaName",
    "Count",
    "CredentialId",
    "DeviceId",
    "EdgeId",
    "GrantId",
    "SignerName",
    "checked",
]


def checked(grammar: Grammar) -> Callable[[str], str]:
    """A pydantic validator that admits only values of ``grammar`` (ValueError otherwise)."""

    def check(value: str) -> str:
        if not grammar.is_valid(value):
            raise ValueError(f"{grammar.name} must be {grammar.hint}")
        return value

    return check


def _described(grammar: Grammar) -> Any:
    """The grammar in the OpenAPI document too (``pattern``), checked by the validator below so
    that a refusal names the grammar in words."""
    return Path(
        description=f"{grammar.name}: {grammar.hint}",
        json_schema_extra={"pattern": f"^{grammar.pattern.pattern}$"},
    )


DeviceId = Annotated[str, _described(DEVICE_ID), AfterValidator(checked(DEVICE_ID))]
CaName = Annotated[str, _described(CA_NAME), AfterValidator(checked(CA_NAME))]
SignerName = Annotated[str, _described(SIGNER_NAME), AfterValidator(checked(SIGNER_NAME))]
AccessId = Annotated[str, _described(ACCESS_ID), AfterValidator(checked(ACCESS_ID))]
GrantId = Annotated[str, _described(GRANT_ID), AfterValidator(checked(GRANT_ID))]
EdgeId = Annotated[str, _described(EDGE_ID), AfterValidator(checked(EDGE_ID))]
CredentialId = Annotated[str, _described(CREDENTIAL_ID), AfterValidator(checked(CREDENTIAL_ID))]


MAX_COUNT = 2**63 - 1

Count = Annotated[int, annotated_types.Interval(ge=0, le=MAX_COUNT)]
"""0 .. 2**63 - 1: offsets, trail sequences, bundle versions, tree sizes."""

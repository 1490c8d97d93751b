"""The grammars of otward's identifiers, in one place.

Device ids, owners, CA names and the ids of the access model end up in certificates,
audit events, file names and line-oriented exports (syslog, JSON Lines, Mosquitto
ACLs). Each grammar admits only letters, digits and a few separators, so no
identifier can carry a control character, a space or a newline. The services check
what they store against these grammars, and the API refuses a path parameter that
does not match (:mod:`otward.http.params`).

A value must match the whole pattern (``fullmatch``): with ``re.match`` and a
trailing ``$``, Python would also accept the value followed by a newline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ACCESS_ID",
    "CA_NAME",
    "CREDENTIAL_ID",
    "DEVICE_ID",
    "EDGE_ID",
    "GRANT_ID",
    "OWNER",
    "SIGNER_NAME",
    "Grammar",
]


@dataclass(frozen=True)
class Grammar:
    """One kind of identifier: its name in messages, its pattern and a hint for users."""

    name: str
    pattern: re.Pattern[str]
    hint: str

    def is_valid(self, value: object) -> bool:
        """True when ``value`` is a string matching the whole pattern; never raises."""
        return isinstance(value, str) and self.pattern.fullmatch(value) is not None


DEVICE_ID = Grammar(
    "device id",
    re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"),
    "1-64 letters, digits or ._-, starting with a letter or digit",
)
OWNER = Grammar(
    "owner",
    re.compile(r"[a-z0-9][a-z0-9._-]{0,63}"),
    "1-64 lower-case letters, digits or ._-, starting with a letter or digit",
)
CA_NAME = Grammar(
    "CA name",
    re.compile(r"[a-z0-9][a-z0-9-]{0,62}"),
    "1-63 lower-case letters, digits or -, starting with a letter or digit",
)
SIGNER_NAME = Grammar("signer name", CA_NAME.pattern, CA_NAME.hint)
ACCESS_ID = Grammar(
    "identifier",
    re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"),
    "1-64 letters, digits or ._-, starting with a letter or digit",
)
GRANT_ID = Grammar(
    "grant id",
    re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"),
    "1-128 letters, digits or ._- (a role id, '-' and a number)",
)
EDGE_ID = Grammar(
    "identifier",
    re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}"),
    "1-128 letters, digits or ._:@-, starting with a letter or digit",
)
CREDENTIAL_ID = Grammar("credential id", re.compile(r"[0-9a-f]{32}"), "32 lower-case hexadecimal digits")

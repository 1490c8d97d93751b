"""The IEC 62443-4-2 component requirements otward's checks serve, by number, with their titles.

A finding names the requirements it concerns so a plant's engineer can put it into the terms of the
standard their auditor uses. Only requirements a check actually serves are listed; the table is what
``docs/assess.md`` prints.
"""

from __future__ import annotations

from typing import Final

__all__ = ["REQUIREMENTS", "requirement_title", "validate_requirements"]

REQUIREMENTS: Final[dict[str, str]] = {
    "CR 1.1": "Human user identification and authentication",
    "CR 1.2": "Software process and device identification and authentication",
    "CR 1.5": "Authenticator management",
    "CR 1.8": "Public key infrastructure certificates",
    "CR 1.9": "Strength of public key-based authentication",
    "CR 2.8": "Auditable events",
    "CR 2.11": "Timestamps",
    "CR 3.1": "Communication integrity",
    "CR 3.4": "Software and information integrity",
    "CR 3.9": "Protection of audit information",
    "CR 3.14": "Integrity of the boot process",
    "CR 4.1": "Information confidentiality",
    "CR 4.3": "Use of cryptography",
    "CR 6.1": "Audit log accessibility",
    "CR 7.1": "Denial of service protection",
    "CR 7.7": "Least functionality",
    "NDR 1.13": "Access via untrusted networks",
}


def requirement_title(number: str) -> str:
    """The title of a component requirement; raises KeyError for a number not in the table."""
    return REQUIREMENTS[number]


def validate_requirements(numbers: tuple[str, ...]) -> None:
    """Refuse a finding that names a requirement outside the table (a typo would silently drop it from
    the report's mapping)."""
    unknown = [n for n in numbers if n not in REQUIREMENTS]
    if unknown:
        raise ValueError(f"unknown IEC 62443-4-2 requirement(s): {', '.join(unknown)}")

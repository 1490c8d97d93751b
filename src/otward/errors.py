"""The one exception tree of otward.

Every error carries a public ``message`` that is safe to show a client (it never
contains key material, tokens or whole requests) and, where it helps, the
``rule`` that was broken so that an API client can act on it::

    OtwardError
    ├── ConfigError                 settings or data directory unusable
    ├── InvalidRequestError         the request itself is malformed
    │   ├── ParseError              bytes that are not what they claim (PEM, DER, CSR, OCSP)
    │   └── UnsupportedAlgorithmError  key type, size, curve or hash refused
    ├── PolicyViolationError        well-formed, but a profile or CA rule forbids it
    ├── NotFoundError               unknown CA, profile or certificate
    ├── ConflictError               would overwrite or contradict existing state
    ├── AuthenticationError         missing or wrong credentials
    │   └── RateLimitedError        too many failed attempts from one source
    ├── PermissionDeniedError       the credentials are good but do not cover the request
    ├── IntegrityError              stored data fails an integrity check (audit chain)
    └── BackendError                an adapter failed (not the caller's fault)
        ├── StorageError            database
        └── SignerError             key backend
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BackendError",
    "ConfigError",
    "ConflictError",
    "IntegrityError",
    "InvalidRequestError",
    "NotFoundError",
    "OtwardError",
    "ParseError",
    "PermissionDeniedError",
    "PolicyViolationError",
    "RateLimitedError",
    "SignerError",
    "StorageError",
    "UnsupportedAlgorithmError",
]


class OtwardError(Exception):
    """Root of all otward errors; ``rule`` names the check that failed."""

    def __init__(self, message: str, *, rule: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.rule = rule

    def __str__(self) -> str:
        return self.message


class ConfigError(OtwardError):
    """Configuration or data directory is missing, inconsistent or unsafe."""


class InvalidRequestError(OtwardError):
    """The caller sent something malformed."""


class ParseError(InvalidRequestError):
    """Input bytes could not be parsed as the expected structure."""


class UnsupportedAlgorithmError(InvalidRequestError):
    """A key type, key size, curve or hash algorithm that otward refuses."""


class PolicyViolationError(OtwardError):
    """A well-formed request that a profile or authority rule forbids."""


class NotFoundError(OtwardError):
    """The named object (CA, profile, certificate, token) does not exist."""


class ConflictError(OtwardError):
    """The operation would overwrite or contradict existing state."""


class AuthenticationError(OtwardError):
    """Credentials are missing, unknown or revoked."""


class RateLimitedError(AuthenticationError):
    """Too many failed attempts from one source address; try again after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float, rule: str | None = "rate-limit") -> None:
        super().__init__(message, rule=rule)
        self.retry_after = retry_after


class PermissionDeniedError(OtwardError):
    """The credentials are valid, but what they may do does not include this request (403)."""


class IntegrityError(OtwardError):
    """Stored data does not match what was recorded (a broken audit chain, an unreadable record)."""

    def __init__(self, message: str, *, rule: str | None = None, sequence: int | None = None) -> None:
        super().__init__(message, rule=rule)
        self.sequence = sequence  # the audit record concerned, when there is one


class BackendError(OtwardError):
    """An adapter failed; the message is generic, the cause is chained."""


class StorageError(BackendError):
    """The database failed or is unreachable."""


class SignerError(BackendError):
    """A key backend could not load, create or use a key."""

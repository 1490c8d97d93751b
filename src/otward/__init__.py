"""otward: secure communication and trusted identity for industrial sites.

The package is layered: :mod:`otward.core` holds pure PKI logic (values in,
decisions out, no I/O and no clock), :mod:`otward.services` composes it with
the ports that :mod:`otward.adapters` implement (database, key storage), and
:mod:`otward.http` and :mod:`otward.cli` are thin entry points.
"""

from otward.errors import (
    AuthenticationError,
    BackendError,
    ConfigError,
    ConflictError,
    IntegrityError,
    InvalidRequestError,
    NotFoundError,
    OtwardError,
    ParseError,
    PolicyViolationError,
    RateLimitedError,
    SignerError,
    StorageError,
    UnsupportedAlgorithmError,
)

__version__ = "0.1.0"

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
    "PolicyViolationError",
    "RateLimitedError",
    "SignerError",
    "StorageError",
    "UnsupportedAlgorithmError",
    "__version__",
]

"""One key backend per reference scheme: new keys go to the configured one, existing keys are
found where their reference says (``file:...`` or ``pkcs11:...``).

An installation that moved to a token keeps loading the file keys it did not move (a root
left offline in a file while new issuing CAs live in the token, docs/hsm.md); nothing ever
falls back from one backend to another: a reference names exactly one.
"""

from __future__ import annotations

from collections.abc import Mapping

from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from otward.core.keys import KeyType
from otward.core.ports import KeyBackend
from otward.errors import SignerError

__all__ = ["RoutingKeyBackend"]


class RoutingKeyBackend:
    """Implements :class:`otward.core.ports.KeyBackend` over backends keyed by scheme (``"file"``)."""

    def __init__(self, create_in: str, backends: Mapping[str, KeyBackend]) -> None:
        if create_in not in backends:
            raise ValueError(f"no key backend for scheme {create_in!r}")
        self._create_in = create_in
        self._backends = dict(backends)

    def __repr__(self) -> str:
        return f"RoutingKeyBackend(create_in={self._create_in!r}, schemes={sorted(self._backends)!r})"

    @property
    def default(self) -> KeyBackend:
        """The backend new keys are created in."""
        return self._backends[self._create_in]

    def backend(self, scheme: str) -> KeyBackend | None:
        return self._backends.get(scheme)

    def attach(self, scheme: str, backend: KeyBackend) -> None:
        """Load ``scheme:`` references with ``backend`` from now on (after keys were moved there);
        the backend it replaces, if any, is closed."""
        previous = self._backends.get(scheme)
        self._backends[scheme] = backend
        close = getattr(previous, "close", None)
        if previous is not backend and close is not None:
            close()

    def _for(self, key_ref: str) -> KeyBackend:
        scheme, _, _ = key_ref.partition(":")
        backend = self._backends.get(scheme)
        if backend is None:
            raise SignerError(
                f"key reference '{key_ref}' needs the {scheme} key backend, which is not configured"
            )
        return backend

    def create_key(self, key_type: KeyType, label: str) -> str:
        return self.default.create_key(key_type, label)

    def load_key(self, key_ref: str) -> CertificateIssuerPrivateKeyTypes:
        return self._for(key_ref).load_key(key_ref)

    def destroy_key(self, key_ref: str) -> None:
        self._for(key_ref).destroy_key(key_ref)

    def close(self) -> None:
        """Close the backends that hold sessions (a token logs out when its last user closes)."""
        for backend in self._backends.values():
            close = getattr(backend, "close", None)
            if close is not None:
                close()

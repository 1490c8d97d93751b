"""The OCSP responder: status from the database on every request, signatures reused when allowed.

The certificate's status is read fresh for each request, so a revocation is
answered as revoked at once. What is reused is the signed response for an
unchanged status when the request carries no nonce (RFC 5019 style), which is
how large responders reach their rates. A request with a nonce always gets a
freshly signed response that echoes it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from otward.config import OcspSettings
from otward.core.keys import signature_hash_for
from otward.core.ocsp import (
    CertStatus,
    IssuerIndex,
    OcspQuery,
    StatusAnswer,
    build_ocsp_response,
    build_unsuccessful_response,
    load_ocsp_request,
)
from otward.core.ports import CertificateStore
from otward.errors import ParseError
from otward.services.authorities import AuthorityService

__all__ = ["OcspResponder", "OcspResult"]

_CACHE_ENTRIES = 100_000

_CacheKey = tuple[tuple[str, bytes, bytes], int, CertStatus, datetime | None, int]


class OcspResult:
    """DER of the response and what it said, for logging and metrics; ``this_update`` and
    ``next_update`` of a successful answer to a request without a nonce, which HTTP caches may keep
    until ``next_update`` (RFC 5019 section 6; None otherwise)."""

    __slots__ = ("der", "next_update", "status", "this_update")

    def __init__(
        self,
        der: bytes,
        status: str,
        this_update: datetime | None = None,
        next_update: datetime | None = None,
    ) -> None:
        self.der = der
        self.status = status
        self.this_update = this_update
        self.next_update = next_update


class OcspResponder:
    def __init__(
        self,
        store: CertificateStore,
        authorities: AuthorityService,
        settings: OcspSettings,
        *,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._authorities = authorities
        self._validity = timedelta(minutes=settings.validity_minutes)
        self._cache_seconds = float(settings.cache_seconds)
        self._clock = clock
        self._monotonic = monotonic
        self._cache: OrderedDict[_CacheKey, tuple[float, bytes, datetime, datetime]] = OrderedDict()
        self._lock = threading.Lock()
        self._index: IssuerIndex | None = None
        self._indexed_names: frozenset[str] = frozenset()
        self._signed: Counter[str] = Counter()  # responses signed per CA since the last drain

    def _find_ca(self, query: OcspQuery) -> str | None:
        name = self._index.find(query) if self._index is not None else None
        if name is not None:
            return name
        # Unknown issuer: a CA may have been created since the index was built (by the CLI
        # or another worker). One read of the CA table tells; rebuild only if it changed.
        authorities = self._authorities.list()
        names = frozenset(a.name for a in authorities)
        if self._index is not None and names == self._indexed_names:
            return None
        self._index = IssuerIndex(
            (a.name, x509.load_der_x509_certificate(a.certificate_der)) for a in authorities
        )
        self._indexed_names = names
        return self._index.find(query)

    def respond(self, request_der: bytes) -> OcspResult:
        """DER OCSP response for ``request_der``; never raises for bad input."""
        try:
            query = load_ocsp_request(request_der)
        except ParseError:
            return OcspResult(
                build_unsuccessful_response(ocsp.OCSPResponseStatus.MALFORMED_REQUEST), "malformed"
            )
        ca = self._find_ca(query)
        if ca is None:
            return OcspResult(
                build_unsuccessful_response(ocsp.OCSPResponseStatus.UNAUTHORIZED), "unauthorized"
            )
        issued, revoked = self._store.certificate_status(ca, query.serial_number)
        if revoked is not None:
            answer = StatusAnswer(CertStatus.REVOKED, revoked)
        else:
            answer = StatusAnswer(CertStatus.GOOD if issued else CertStatus.UNKNOWN)
        authority = self._authorities.get(ca)
        key: _CacheKey | None = None
        if query.nonce is None and self._cache_seconds > 0:
            key = (
                query.issuer_key,
                query.serial_number,
                answer.status,
                revoked.revocation_date if revoked else None,
                # A responder renewed (here or by another node) signs from then on.
                authority.ocsp_certificate.serial_number,
            )
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None and self._monotonic() - hit[0] < self._cache_seconds:
                return OcspResult(hit[1], answer.status.value, hit[2], hit[3])
        now = self._clock()
        builder = build_ocsp_response(
            query,
            answer,
            responder_certificate=authority.ocsp_certificate,
            this_update=now,
            next_update=now + self._validity,
        )
        der = builder.sign(authority.ocsp_key, signature_hash_for(authority.ocsp_key)).public_bytes(
            Encoding.DER
        )
        with self._lock:
            self._signed[ca] += 1
        next_update = now + self._validity
        if key is not None:
            with self._lock:
                self._cache[key] = (self._monotonic(), der, now, next_update)
                if len(self._cache) > _CACHE_ENTRIES:
                    self._cache.popitem(last=False)
        if query.nonce is not None:  # an answer to this request only: no cache may keep it
            return OcspResult(der, answer.status.value)
        return OcspResult(der, answer.status.value, now, next_update)

    def drain_signature_counts(self) -> dict[str, int]:
        """Responses signed per CA since the last call. Signing every response is audited in
        aggregate (one ``ocsp.signed`` event per CA and interval): an event per response would
        cost more than the response itself."""
        with self._lock:
            counts = dict(self._signed)
            self._signed.clear()
        return counts

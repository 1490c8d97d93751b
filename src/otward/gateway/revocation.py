"""Revocation at the gateway: CRLs fetched, verified, indexed by serial, cached on disk.

Each CRL is accepted only when its signature verifies against a CA certificate of
the gateway's trust file whose subject is the CRL's issuer, and never replaces a
CRL of the same issuer with a lower CRL number (a replayed old CRL would
un-revoke). Its revoked serials go into a set once, because looking a serial up
in a parsed CRL is a linear scan (about 100 look-ups per second on a
100,000-entry CRL; a set answers in well under a microsecond).

Fail-closed rules (docs/gateway.md):

* revocation checking is on when at least one CRL URL is given; then a client
  whose issuer has no CRL (none ever fetched nor cached) is refused, because its
  status cannot be known;
* a CRL past its nextUpdate is *stale*: with ``keep`` (the default) the last
  good CRL stays enforced and a warning is logged and audited once per CRL;
  with ``fail-closed`` clients of that issuer are refused until a fresh CRL
  arrives;
* a fetch that fails or returns something unverifiable changes nothing: the
  last good CRL stays in force;
* the last good DER of each URL is kept in the cache directory (0600, written
  to a temporary file and renamed) and loaded, verified again, at start-up.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from otward.adapters.files import write_atomic
from otward.errors import ParseError, PolicyViolationError

__all__ = [
    "CrlIndex",
    "RevocationChecker",
    "StalePolicy",
    "Verdict",
    "chain_keys",
    "load_crl",
]

log = logging.getLogger("otward.gateway.revocation")


class StalePolicy(enum.Enum):
    """What a CRL past its nextUpdate means for clients of its issuer."""

    KEEP = "keep"  # keep enforcing the last good CRL, warn
    FAIL_CLOSED = "fail-closed"  # refuse clients of that issuer until a fresh CRL arrives


@dataclass(frozen=True)
class CrlIndex:
    """One verified CRL reduced to what the gateway consults."""

    issuer: bytes  # DER of the issuer name
    issuer_text: str
    crl_number: int | None
    this_update: datetime
    next_update: datetime | None
    serials: frozenset[int]
    der: bytes

    def is_stale(self, now: datetime) -> bool:
        return self.next_update is not None and now > self.next_update


@dataclass(frozen=True)
class Verdict:
    """The revocation answer for one client chain."""

    ok: bool
    reason: str


_GOOD = Verdict(True, "not revoked")
_UNCHECKED = Verdict(True, "revocation not checked (no CRL URL configured)")


def _verifies(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    key = issuer.public_key()
    if not isinstance(
        key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
    ):
        return False
    try:
        return crl.is_signature_valid(key)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False


def load_crl(data: bytes, trusted: Sequence[x509.Certificate]) -> CrlIndex:
    """Parse a DER or PEM CRL and verify it against the trusted CA that issued it.

    ParseError for bytes that are not a CRL; PolicyViolationError for a CRL whose
    issuer is not a trusted CA or whose signature does not verify.
    """
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            crl = x509.load_pem_x509_crl(data)
        else:
            crl = x509.load_der_x509_crl(data)
        issuer = crl.issuer  # cryptography parses the parts of a CRL when they are first read
        issuer_text = issuer.rfc4514_string()
    # InvalidVersion is not a ValueError; an attribute value of a type cryptography does not allow
    # for its OID (a CN as BIT STRING) raises TypeError when the name is read
    except (ValueError, TypeError, x509.InvalidVersion) as exc:
        raise ParseError(f"not a CRL ({exc})", rule="crl-parse") from None
    issuers = [c for c in trusted if c.subject == issuer]
    if not issuers:
        raise PolicyViolationError(
            f"CRL issuer '{issuer_text}' is not a certificate of the trust file",
            rule="crl-issuer",
        )
    if not any(_verifies(crl, issuer) for issuer in issuers):
        raise PolicyViolationError(f"CRL signature of '{issuer_text}' does not verify", rule="crl-signature")
    # Everything the index keeps is read here, so a malformed part is a ParseError at load rather
    # than an exception wherever the CRL is read later (a signed CRL can still be malformed).
    try:
        try:
            number: int | None = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        except x509.ExtensionNotFound:
            number = None
        this_update, next_update = crl.last_update_utc, crl.next_update_utc
        serials = frozenset(entry.serial_number for entry in crl)
    except (ValueError, TypeError, x509.DuplicateExtension, UnsupportedAlgorithm) as exc:
        raise ParseError(f"CRL of '{issuer_text}' is malformed ({exc})", rule="crl-parse") from None
    return CrlIndex(
        issuer=issuer.public_bytes(),
        issuer_text=issuer_text,
        crl_number=number,
        this_update=this_update,
        next_update=next_update,
        serials=serials,
        der=crl.public_bytes(Encoding.DER),
    )


def chain_keys(
    certificate: x509.Certificate, trusted: Sequence[x509.Certificate]
) -> tuple[tuple[bytes, int], ...]:
    """(issuer name DER, serial) of the client certificate and of the trusted CAs above it.

    The CAs come from the trust file (Python 3.11 does not expose the verified
    chain), so a revoked issuing CA listed there is caught by its parent's CRL.
    """
    keys = [(certificate.issuer.public_bytes(), certificate.serial_number)]
    current = certificate
    for _ in range(8):
        parent = next((c for c in trusted if c.subject == current.issuer), None)
        if parent is None or parent.subject == parent.issuer:
            break
        keys.append((parent.issuer.public_bytes(), parent.serial_number))
        current = parent
    return tuple(keys)


def _cache_name(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:24] + ".crl"


class RevocationChecker:
    """Holds the verified CRL of each issuer and answers for client chains.

    ``warn`` is called with a message once per stale CRL (the gateway audits it).
    """

    def __init__(
        self,
        trusted: Sequence[x509.Certificate],
        urls: Iterable[str],
        *,
        cache_dir: Path | None = None,
        stale: StalePolicy = StalePolicy.KEEP,
        timeout: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.trusted = list(trusted)
        self.urls = list(dict.fromkeys(urls))
        self.cache_dir = cache_dir
        self.stale = stale
        self.timeout = timeout
        self.clock = clock
        self.warn = warn or (lambda message: log.warning("%s", message))
        self.indexes: dict[bytes, CrlIndex] = {}
        self._source: dict[str, bytes] = {}  # url -> digest of the DER last accepted
        self._stale_warned: set[tuple[bytes, int | None]] = set()
        self.generation = 0  # bumped whenever a CRL is installed

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    def check(self, keys: Sequence[tuple[bytes, int]]) -> Verdict:
        """Verdict for a chain from :func:`chain_keys`; only the client's issuer must have a CRL."""
        if not self.enabled:
            return _UNCHECKED
        now = self.clock()
        for position, (issuer, serial) in enumerate(keys):
            index = self.indexes.get(issuer)
            if index is None:
                if position == 0:
                    return Verdict(False, "no CRL for the issuer: revocation status unknown")
                continue
            if serial in index.serials:
                what = "certificate" if position == 0 else "issuing CA certificate"
                return Verdict(False, f"{what} {serial:x} is revoked")
            if index.is_stale(now):
                self._warn_stale(index)
                if self.stale is StalePolicy.FAIL_CLOSED:
                    return Verdict(False, f"CRL of '{index.issuer_text}' is past its nextUpdate")
        return _GOOD

    def _warn_stale(self, index: CrlIndex) -> None:
        key = (index.issuer, index.crl_number)
        if key not in self._stale_warned:
            self._stale_warned.add(key)
            action = "refusing its clients" if self.stale is StalePolicy.FAIL_CLOSED else "still enforcing it"
            self.warn(
                f"CRL {index.crl_number} of '{index.issuer_text}' is past its nextUpdate "
                f"({index.next_update}); {action}"
            )

    def install(self, index: CrlIndex) -> bool:
        """Use ``index`` unless a CRL of the same issuer with a higher number is in force."""
        current = self.indexes.get(index.issuer)
        if current is not None and current.crl_number is not None:
            if index.crl_number is None or index.crl_number < current.crl_number:
                log.warning(
                    "ignoring CRL %s of '%s': number %s is lower than the %s in force",
                    index.crl_number,
                    index.issuer_text,
                    index.crl_number,
                    current.crl_number,
                )
                return False
            if index.crl_number == current.crl_number:
                return False
        self.indexes[index.issuer] = index
        self.generation += 1
        return True

    def load_cache(self) -> list[str]:
        """Install the cached CRL of each URL, verified again; returns the problems met."""
        problems: list[str] = []
        if self.cache_dir is None:
            return problems
        for url in self.urls:
            path = self.cache_dir / _cache_name(url)
            if not path.exists():
                continue
            try:
                index = load_crl(path.read_bytes(), self.trusted)
            except (OSError, ParseError, PolicyViolationError) as exc:
                problems.append(f"cached CRL {path} for {url}: {exc}")
                continue
            self.install(index)
            self._source[url] = hashlib.sha256(index.der).digest()
        return problems

    async def refresh(self, client: httpx.AsyncClient) -> list[str]:
        """Fetch every URL once; install what verifies; returns the problems met (never raises)."""
        problems: list[str] = []
        results = await asyncio.gather(*(self._fetch(client, url) for url in self.urls))
        for url, result in zip(self.urls, results, strict=True):
            if isinstance(result, str):
                problems.append(result)
                continue
            digest = hashlib.sha256(result).digest()
            if self._source.get(url) == digest:
                continue  # unchanged: nothing to parse
            try:
                index = await asyncio.to_thread(load_crl, result, self.trusted)
            except (ParseError, PolicyViolationError) as exc:
                problems.append(f"CRL from {url} refused: {exc}")
                continue
            self._source[url] = digest
            if self.install(index) and self.cache_dir is not None:
                try:
                    await asyncio.to_thread(self._store, url, index.der)
                except OSError as exc:
                    problems.append(f"cannot cache the CRL from {url}: {exc}")
        return problems

    def _store(self, url: str, der: bytes) -> None:
        assert self.cache_dir is not None  # noqa: S101 - checked by the caller
        self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.cache_dir / _cache_name(url), der)

    async def _fetch(self, client: httpx.AsyncClient, url: str) -> bytes | str:
        try:
            response = await client.get(url, timeout=self.timeout)
        except httpx.HTTPError as exc:
            return f"cannot fetch the CRL from {url}: {type(exc).__name__}: {exc}"
        if response.status_code != 200:
            return f"cannot fetch the CRL from {url}: HTTP {response.status_code}"
        if len(response.content) > 64 * 1024 * 1024:
            return f"CRL from {url} is larger than 64 MiB"
        log.debug("fetched the CRL from %s (%d bytes)", url, len(response.content))
        return response.content

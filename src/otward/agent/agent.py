"""The device agent: enroll once with a token, then renew, attest and keep running on its own.

Every renewal makes a new key, so a key that leaked is useless after the next
renewal. The old key and certificate stay in force until the new certificate is
verified and committed (one rename of state.json); only then is the old key
deleted. A failed renewal deletes the new key and leaves the old state alone,
so the agent never ends up without a working identity.

Two renewal paths:

* a key in a file, certificate still valid: EST ``simplereenroll``, authenticated
  by the current certificate in the TLS handshake;
* a key in a PKCS#11 token (Python's ``ssl`` cannot do a TLS handshake with it) or
  an expired certificate: a ``renew`` challenge signed with the current key buys a
  single-use renewal token, spent on ``simpleenroll`` with the new key's CSR. The
  server grants it only while the latest certificate is unrevoked and valid or
  within the owner's grace period after expiry.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from otward.agent.client import (
    DEFAULT_TIMEOUT,
    AttestResult,
    EstClient,
    EstError,
    bootstrap,
    client_context,
    validate_pin,
)
from otward.agent.keys import DeviceKey, KeyStore
from otward.agent.schedule import backoff, renewal_due
from otward.agent.state import (
    AgentState,
    AgentStore,
    KeyBackend,
    Pkcs11Settings,
    dump_certificates,
    key_label,
)
from otward.core.attestation import ChallengePurpose, challenge_message
from otward.core.authority import issuing_ca_name
from otward.core.chain import find_path, has_extended_key_usage
from otward.errors import (
    AuthenticationError,
    BackendError,
    ConfigError,
    ConflictError,
    NotFoundError,
    OtwardError,
)

__all__ = ["DEFAULT_ATTEST_INTERVAL", "Agent", "KeyFile", "open_key_store"]

log = logging.getLogger("otward.agent")

DEFAULT_ATTEST_INTERVAL = timedelta(minutes=15)
_MIN_SLEEP_SECONDS = 1.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


@runtime_checkable
class KeyFile(Protocol):
    """A device key kept in a PEM file, which Python's ``ssl`` can use for TLS client authentication."""

    @property
    def path(self) -> Path: ...


def open_key_store(store: AgentStore, backend: KeyBackend, pkcs11: Pkcs11Settings | None) -> KeyStore:
    """The key store a state names: ``<store>/keys`` for files, or the PKCS#11 token."""
    from otward.agent.keys import FileKeyStore, pkcs11_store

    if backend is KeyBackend.PKCS11:
        if pkcs11 is None:
            raise ConfigError("the pkcs11 key backend needs module, token label and PIN file")
        return pkcs11_store(pkcs11.module, pkcs11.token_label, pkcs11.pin_file)
    return FileKeyStore(store.keys_dir)


class Agent:
    """One enrolled device identity in one store directory."""

    def __init__(
        self,
        store: AgentStore,
        key_store: KeyStore,
        *,
        clock: Callable[[], datetime] = _utcnow,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Use :meth:`open` or :meth:`enroll`; this repairs cert.pem/chain.pem after an interrupted switch."""
        self._store = store
        self._keys = key_store
        self._clock = clock
        self._timeout = timeout
        self._store.sync_exports(self._store.load())

    @classmethod
    def open(
        cls, directory: Path, *, clock: Callable[[], datetime] = _utcnow, timeout: float = DEFAULT_TIMEOUT
    ) -> Agent:
        """The agent enrolled in ``directory``, with the key store its state names."""
        store = AgentStore(directory)
        state = store.load()
        return cls(store, open_key_store(store, state.backend, state.pkcs11), clock=clock, timeout=timeout)

    @classmethod
    def enroll(
        cls,
        store: AgentStore,
        *,
        server: str,
        token: str | None,
        device_id: str,
        pin: str,
        key_store: KeyStore | None = None,
        idevid_key_label: str | None = None,
        pkcs11: Pkcs11Settings | None = None,
        ca_label: str | None = None,
        clock: Callable[[], datetime] = _utcnow,
        timeout: float = DEFAULT_TIMEOUT,
        proxy: str | None = None,
    ) -> Agent:
        """Pin the server, make the first key, enroll it with ``token`` and store the result.

        ``proxy`` (an HTTP proxy URL) is used for this and every later connection of the agent.

        The backend is PKCS#11 when ``pkcs11`` is given, else files; ``key_store`` defaults to the
        one :func:`open_key_store` opens for it. With ``idevid_key_label`` instead of a token, the
        device enrolls with its factory identity: the certificate and private key of that label on
        the ``pkcs11`` token authenticate the TLS handshake (IEEE 802.1AR IDevID; the owner claimed the
        device), and the new key is made on the same token and bound to that TLS session. A wrong
        pin or a server certificate that does not chain fails before the store directory is
        touched. Any later failure deletes the new key.
        """
        validate_pin(pin)
        if (token is None) == (idevid_key_label is None):
            raise ConfigError(
                "enroll with an enrollment token or with the factory identity (IDevID), one of them"
            )
        if idevid_key_label is not None and pkcs11 is None:
            raise ConfigError(
                "the factory identity (IDevID) is on a PKCS#11 token: give its module, label and PIN"
            )
        if store.is_enrolled():
            raise ConflictError(f"agent store {store.directory} is already enrolled", rule="store-enrolled")
        trusted = bootstrap(server, pin, timeout=timeout, now=clock(), proxy=proxy)
        backend = KeyBackend.PKCS11 if pkcs11 is not None else KeyBackend.FILE
        created = not store.directory.exists()
        store.prepare()
        keys = key_store if key_store is not None else open_key_store(store, backend, pkcs11)
        label = key_label(device_id, 1)
        try:
            key = _generate(keys, label)
        except BaseException:
            if key_store is None:
                keys.close()
            _remove_empty(store, created)
            raise
        try:
            if backend is KeyBackend.FILE and not isinstance(key, KeyFile):
                raise ConfigError("a file-backed agent needs a key store whose keys are files")
            ca_pem = dump_certificates(trusted)
            with EstClient(server, ca_pem, ca_label=ca_label, timeout=timeout, proxy=proxy) as client:
                if token is not None:
                    certificate = client.simple_enroll(key.certificate_request(device_id), token)
                else:
                    certificate = client.factory_enroll(
                        _factory_context(ca_pem, keys, pkcs11, idevid_key_label),
                        lambda unique: key.certificate_request(
                            device_id, challenge_password=base64.b64encode(unique)
                        ),
                    )
                chain = _verify_issued(
                    certificate, key, device_id, trusted, _ca_certificates_for(client, certificate), clock()
                )
            state = AgentState(
                server_url=server,
                ca_label=ca_label,
                proxy=proxy,
                device_id=device_id,
                server_pin=pin,
                backend=backend,
                pkcs11=pkcs11,
                key_label=label,
                key_counter=1,
                certificate=certificate,
                chain=chain,
            )
            store.save_ca(trusted)
            store.save(state)
        except BaseException:
            _discard(keys, label)
            if key_store is None:
                keys.close()
            for path in (store.state_path, store.ca_path, store.cert_path, store.chain_path):
                path.unlink(missing_ok=True)
            _remove_empty(store, created)
            raise
        log.info(
            "enrolled %s: certificate %x valid until %s",
            device_id,
            certificate.serial_number,
            certificate.not_valid_after_utc,
        )
        return cls(store, keys, clock=clock, timeout=timeout)

    @property
    def store(self) -> AgentStore:
        return self._store

    @property
    def state(self) -> AgentState:
        return self._store.load()

    def close(self) -> None:
        self._keys.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _client(self, state: AgentState) -> EstClient:
        return EstClient(
            state.server_url,
            self._store.ca_pem(),
            ca_label=state.ca_label,
            timeout=self._timeout,
            proxy=state.proxy,
        )

    def renew(self) -> AgentState:
        """Renew with a new key; returns the committed new state. On failure the state does not
        change; when the connection failed (the server may have issued), the new key is kept and the
        next renewal asks again with it."""
        with self._store.lock():
            return self._renew()

    def _renew(self) -> AgentState:
        state = self._store.load()
        now = self._clock()
        current = self._keys.load(state.key_label)
        label = state.next_key_label()
        new_key = _pending_or_new(self._keys, label)
        try:
            csr = new_key.certificate_request(state.device_id)
            with self._client(state) as client:
                valid = state.certificate.not_valid_before_utc <= now < state.certificate.not_valid_after_utc
                if isinstance(current, KeyFile) and valid:
                    certificate = client.simple_reenroll(csr, self._store.chain_path, current.path)
                else:
                    if not valid:
                        log.warning(
                            "certificate %x is not valid now; renewing by challenge",
                            state.certificate.serial_number,
                        )
                    token = _renewal_token(client, state.device_id, current)
                    certificate = client.simple_enroll(csr, token)
                intermediates = [*state.chain, *_ca_certificates_for(client, certificate)]
                chain = _verify_issued(
                    certificate, new_key, state.device_id, self._store.load_ca(), intermediates, now
                )
            renewed = replace(
                state,
                key_label=label,
                key_counter=state.key_counter + 1,
                certificate=certificate,
                chain=chain,
            )
            self._store.commit(renewed)
        except BaseException as exc:
            if not self._committed(label) and not _answer_may_be_lost(exc):
                _discard(self._keys, label)
            raise
        self._store.sync_exports(renewed)
        _discard(self._keys, state.key_label)
        log.info(
            "renewed %s: certificate %x valid until %s (key %s)",
            state.device_id,
            certificate.serial_number,
            certificate.not_valid_after_utc,
            label,
        )
        return renewed

    def _committed(self, label: str) -> bool:
        """Whether state.json already names ``label``; True when unsure, since deleting the key the
        committed state names would leave the agent without an identity."""
        try:
            return self._store.load().key_label == label
        except OtwardError:
            return True

    def attest(self) -> AttestResult:
        """Prove to the server that this device still holds its key (the registry's "last seen")."""
        state = self._store.load()
        key = self._keys.load(state.key_label)
        with self._client(state) as client:
            challenge = client.challenge(state.device_id, ChallengePurpose.ATTEST)
            signature = key.sign(challenge_message(state.device_id, ChallengePurpose.ATTEST, challenge.nonce))
            result = client.attest(state.device_id, challenge.challenge_id, signature)
        if result.result != "passed":
            raise AuthenticationError(f"attestation {result.result}", rule="attest")
        return result

    def run(self, stop: threading.Event, *, attest_interval: timedelta = DEFAULT_ATTEST_INTERVAL) -> None:
        """Renew when due (with backoff after failures), attest every ``attest_interval``, until ``stop``.

        Renewal follows the wall clock, because certificate validity does; retries and attestations
        follow the monotonic clock, so a device whose clock is set back (NTP after a cold boot
        without RTC) still attests on time. The state is re-read each round, so a renewal made
        meanwhile by ``otward agent renew`` is seen.
        """
        rng = secrets.SystemRandom()
        interval = max(attest_interval.total_seconds(), _MIN_SLEEP_SECONDS)
        jitter_for: tuple[int, float] | None = None
        failures = 0
        retry_at = next_attest = time.monotonic()
        while not stop.is_set():
            state = self._store.load()
            certificate = state.certificate
            if jitter_for is None or jitter_for[0] != certificate.serial_number:
                jitter_for = (certificate.serial_number, rng.random())
                failures = 0
            renew_in = (
                renewal_due(certificate.not_valid_before_utc, certificate.not_valid_after_utc, jitter_for[1])
                - self._clock()
            ).total_seconds()
            if failures:
                renew_in = max(renew_in, retry_at - time.monotonic())
            if renew_in <= 0:
                error = _attempt("renewal", self.renew)
                if error is None:
                    continue
                failures += 1
                delay = max(backoff(failures, rng), _retry_after(error), _MIN_SLEEP_SECONDS)
                retry_at = time.monotonic() + delay
                log.warning("renewal attempt %d failed; next in %.0f s", failures, delay)
                continue
            if time.monotonic() >= next_attest:
                if _attempt("attestation", self.attest) is None:
                    log.info("attestation of %s passed", state.device_id)
                next_attest = time.monotonic() + interval
            attest_in = next_attest - time.monotonic()
            stop.wait(min(max(min(renew_in, attest_in), _MIN_SLEEP_SECONDS), interval))
        log.info("agent for %s stopped", self._store.load().device_id)


def _factory_context(
    ca_pem: bytes, keys: KeyStore, pkcs11: Pkcs11Settings | None, label: str | None
) -> ssl.SSLContext:
    """A TLS client context presenting the token's factory certificate ``label`` with its key."""
    from otward.adapters.keys.pkcs11 import read_pin_file
    from otward.agent.engine_key import use_token_key
    from otward.agent.keys import Pkcs11KeyStore

    if not isinstance(keys, Pkcs11KeyStore) or pkcs11 is None or label is None:
        raise ConfigError("the factory identity needs the PKCS#11 key store of its token")
    context = client_context(ca_pem)
    use_token_key(
        context,
        module=pkcs11.module,
        token_label=pkcs11.token_label,
        key_label=label,
        pin=read_pin_file(pkcs11.pin_file),
        certificate=keys.certificate(label),
    )
    return context


def _attempt(what: str, action: Callable[[], object]) -> BaseException | None:
    """Run one step of the main loop; a failure is logged (message only) and returned, never raised."""
    try:
        action()
    except OtwardError as exc:
        log.warning("%s failed: %s", what, exc)
        return exc
    except Exception as exc:
        log.exception("%s failed unexpectedly", what)
        return exc
    return None


def _retry_after(error: BaseException) -> float:
    if isinstance(error, EstError) and error.retry_after is not None:
        return error.retry_after
    return 0.0


def _generate(keys: KeyStore, label: str) -> DeviceKey:
    """A new key under ``label``; a key left there by an interrupted renewal was never committed
    (labels only grow), so it is replaced."""
    try:
        return keys.generate(label)
    except ConflictError:
        log.warning("replacing key %s left by an interrupted renewal", label)
        keys.delete(label)
        return keys.generate(label)


def _pending_or_new(keys: KeyStore, label: str) -> DeviceKey:
    """The key a renewal whose answer was lost left under ``label`` (the next renewal asks again with
    it, and the server answers with the certificate it issued then), else a new key."""
    try:
        key = keys.load(label)
    except NotFoundError:
        return _generate(keys, label)
    except OtwardError as exc:  # a key file cut short by a crash while it was written
        log.warning("replacing unreadable key %s: %s", label, exc)
        keys.delete(label)
        return _generate(keys, label)
    log.info("renewing with key %s again: an earlier renewal with it got no answer", label)
    return key


def _answer_may_be_lost(error: BaseException) -> bool:
    """Whether the server may have issued without the answer arriving (the connection failed): the
    new key is kept for the next attempt, which the server recognises as the same renewal."""
    return isinstance(error, BackendError) and error.rule == "server-unreachable"


def _discard(keys: KeyStore, label: str) -> None:
    try:
        keys.delete(label)
    except OtwardError as exc:
        log.warning("could not delete key %s: %s", label, exc)


def _remove_empty(store: AgentStore, created: bool) -> None:
    """Undo the directories a failed enrollment created (only if empty)."""
    for directory in (store.keys_dir, *((store.directory,) if created else ())):
        with contextlib.suppress(OSError):
            directory.rmdir()


def _renewal_token(client: EstClient, device_id: str, key: DeviceKey) -> str:
    """A single-use renewal token, earned by signing a ``renew`` challenge with the current key."""
    challenge = client.challenge(device_id, ChallengePurpose.RENEW)
    signature = key.sign(challenge_message(device_id, ChallengePurpose.RENEW, challenge.nonce))
    result = client.attest(device_id, challenge.challenge_id, signature)
    if result.renewal_token is None:
        raise AuthenticationError(
            "the server granted no renewal token: the certificate is revoked or past the grace period",
            rule="renewal-token",
        )
    return result.renewal_token


def _ca_certificates_for(client: EstClient, certificate: x509.Certificate) -> list[x509.Certificate]:
    """The CA certificates to check an issued ``certificate`` with, all from the pinned server: those
    of the client's EST label and, when its issuer is not among them, those of the label of the CA
    that issued it, which the certificate's caIssuers URL names. That is how an agent enrolled
    without ``--ca`` learns the chain of an owner with its own CA. They are intermediates only: the
    roots stay the pinned ones (``ca.pem``)."""
    known = client.cacerts()
    if any(c.subject == certificate.issuer for c in known):
        return known
    name = issuing_ca_name(certificate)
    if name is None:
        return known
    try:
        return [*known, *client.cacerts(label=name)]
    except EstError as exc:
        log.warning(
            "the CA certificates of '%s', which issued %x, are not available: %s",
            name,
            certificate.serial_number,
            exc,
        )
        return known


def _verify_issued(
    certificate: x509.Certificate,
    key: DeviceKey,
    device_id: str,
    ca_certificates: list[x509.Certificate],
    intermediates: list[x509.Certificate],
    now: datetime,
) -> tuple[x509.Certificate, ...]:
    """The issuing CA(s) above ``certificate`` (root excluded), once it is shown to carry ``key``,
    name ``device_id`` and chain to a root among the trusted ``ca_certificates``."""
    if certificate.public_key() != key.public_key():
        raise AuthenticationError("the issued certificate does not carry the device key", rule="issued-key")
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [n.value for n in names] != [device_id]:
        raise AuthenticationError(
            f"the issued certificate does not name device '{device_id}'", rule="issued-subject"
        )
    roots = [c for c in ca_certificates if c.subject == c.issuer]
    pool = [c for c in [*ca_certificates, *intermediates] if c.subject != c.issuer]
    if not roots:
        raise ConfigError("the stored CA certificates contain no root")
    # Checked at the device's time when that lies within the new certificate's validity, else at its
    # edge: a device whose clock is off (or that renews after expiry) must still accept what it was
    # just issued, while the chain and signatures are checked all the same.
    at = min(max(now, certificate.not_valid_before_utc), certificate.not_valid_after_utc)
    chain = find_path(certificate, pool, roots, at)
    if chain is None or not has_extended_key_usage(certificate, ExtendedKeyUsageOID.CLIENT_AUTH):
        raise AuthenticationError(
            f"the issued certificate (issuer '{certificate.issuer.rfc4514_string()[:128]}') does not chain"
            " to the trusted CA certificates"
            + ("" if chain is None else " as a TLS client certificate (extendedKeyUsage)"),
            rule="issued-chain",
        )
    return tuple(chain[1:-1])

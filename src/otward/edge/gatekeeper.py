"""The gatekeeper at one asset, as a library: bundle installation, the exchange, the local trail.

State lives in one directory (mode 0700): ``bundle.jwt`` (the bundle in force),
``state.json`` (the highest bundle version ever accepted, so a rollback is refused
also after a restart, and the last trail sequence the central server acknowledged)
and ``trail.jsonl`` (the hash-chained local audit trail). Every decision and
every refused bundle is written to the trail before the answer is returned,
whether or not the central server is reachable: fsynced first with
``trail_sync="always"`` (the default), written and flushed to the operating
system with ``trail_sync="batch"`` (fsynced by a background thread every few
milliseconds; a power cut can lose the last of them, never fork the chain, and
only fsynced records are pushed centrally).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from otward.adapters.audit_file import SYNC_MODES, FileAuditTrail, SyncMode
from otward.adapters.files import read_limited, write_atomic
from otward.core.access.decision import AccessSlice, Decider
from otward.core.audit import AuditEvent, EventType, Outcome
from otward.core.edge.exchange import Challenge, NonceBook, Verdict, evaluate
from otward.core.edge.formats import BundleClaims, answer_message, validate_identifier
from otward.core.keys import verify_data
from otward.edge.tokens import TokenVerifier, VerifiedBundle, VerifiedCredential, validate_credential_form
from otward.errors import ConfigError, OtwardError, PolicyViolationError

__all__ = [
    "DEFAULT_NONCE_TTL",
    "DEFAULT_SKEW",
    "DEFAULT_TRAIL_SYNC_INTERVAL",
    "BundleOutcome",
    "Gatekeeper",
    "load_roots",
]

DEFAULT_SKEW = timedelta(seconds=60)
DEFAULT_NONCE_TTL = timedelta(seconds=30)
DEFAULT_TRAIL_SYNC_INTERVAL = timedelta(milliseconds=5)
_COMPONENT = "edge"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def load_roots(path: Path) -> list[x509.Certificate]:
    """The otward root(s) the asset trusts, from a PEM file."""
    try:
        roots = x509.load_pem_x509_certificates(read_limited(path, 1 << 20, "trusted roots"))
    except ValueError as exc:
        raise ConfigError(f"cannot read trusted root(s) from {path}: {exc}", rule="edge-roots") from None
    return roots


@dataclass(frozen=True)
class BundleOutcome:
    """What happened to an offered bundle: installed, already held, or refused (and why)."""

    installed: bool
    version: int | None
    reason: str


class Gatekeeper:
    """Decides access requests at ``asset`` offline; thread-safe (one lock around state changes)."""

    def __init__(
        self,
        asset: str,
        roots: Sequence[x509.Certificate],
        state_dir: Path,
        *,
        clock: Callable[[], datetime] = _utc_now,
        skew: timedelta = DEFAULT_SKEW,
        nonce_ttl: timedelta = DEFAULT_NONCE_TTL,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        host: str | None = None,
        trail_sync: SyncMode = "always",
        trail_sync_interval: timedelta = DEFAULT_TRAIL_SYNC_INTERVAL,
    ) -> None:
        """``trail_sync``: ``"always"`` answers after the decision's record is fsynced; ``"batch"``
        answers after it is written and flushed to the OS, and fsyncs every ``trail_sync_interval``."""
        self.asset = validate_identifier(asset, "asset")
        if skew < timedelta(0):
            raise ConfigError("clock skew tolerance must not be negative", rule="edge-skew")
        if trail_sync not in SYNC_MODES:
            raise ConfigError(
                f"trail sync must be one of {', '.join(SYNC_MODES)}, not {trail_sync!r}",
                rule="edge-trail-sync",
            )
        if not timedelta(0) < trail_sync_interval <= timedelta(seconds=10):
            raise ConfigError("trail sync interval must be above 0 and at most 10 s", rule="edge-trail-sync")
        self._clock = clock
        self._skew = skew
        self._random = random_bytes
        self._host = host or socket.gethostname()
        self._verifier = TokenVerifier(roots)
        self._nonces = NonceBook(ttl=nonce_ttl, capacity=4096)
        self._lock = threading.RLock()
        self._dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._state_path = state_dir / "state.json"
        self._bundle_path = state_dir / "bundle.jwt"
        self._version, self._acked = self._load_state()
        self.trail = FileAuditTrail(
            state_dir / "trail.jsonl", sync=trail_sync, interval=trail_sync_interval.total_seconds()
        )
        self._bundle: BundleClaims | None = None
        self._bundle_token: str | None = None
        self._decider: Decider | None = None
        self._last_refused: bytes | None = None
        if self._bundle_path.exists():
            self.install_bundle(self._bundle_path.read_text(), source="state", keep_expired=True)

    # --- state ----------------------------------------------------------------------------------

    def _load_state(self) -> tuple[int, int]:
        if not self._state_path.exists():
            return 0, 0
        try:
            state = json.loads(self._state_path.read_text())
            asset, version, acked = state["asset"], int(state["version"]), int(state["acked_sequence"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"gatekeeper state {self._state_path} is unreadable: {exc}", rule="edge-state"
            ) from None
        if asset != self.asset:
            raise ConfigError(
                f"state directory {self._dir} belongs to asset '{asset}', not '{self.asset}'",
                rule="edge-state",
            )
        return version, acked

    def _save_state(self) -> None:
        state = {"asset": self.asset, "version": self._version, "acked_sequence": self._acked}
        write_atomic(self._state_path, json.dumps(state, sort_keys=True).encode() + b"\n")

    @property
    def version(self) -> int:
        """The highest bundle version ever accepted here (0 before the first)."""
        return self._version

    @property
    def bundle(self) -> BundleClaims | None:
        return self._bundle

    @property
    def acked_sequence(self) -> int:
        """The last trail record the central server confirmed it stored."""
        return self._acked

    def acknowledge(self, sequence: int) -> None:
        """Remember the central server's acknowledged trail sequence (persisted before returning)."""
        with self._lock:
            sequence = max(0, min(sequence, self.trail.last_sequence))
            if sequence != self._acked:
                self._acked = sequence
                self._save_state()

    # --- bundles --------------------------------------------------------------------------------

    def install_bundle(
        self, token: str, *, at: datetime | None = None, source: str = "file", keep_expired: bool = False
    ) -> BundleOutcome:
        """Verify and install a bundle; a refusal is recorded (``access.bundle_refused``) and returned.

        Refused: a signature or signer chain that does not verify against the roots, another asset, a
        version lower than the highest accepted (rollback), the same version with other content, an
        issue time in the future beyond the skew, or expiry (unless ``keep_expired``: the bundle this
        gatekeeper already held, reloaded after a restart, keeps deciding fail-open functions)."""
        when = at or self._clock()
        with self._lock:
            try:
                verified, decider = self._check_bundle(token, when, keep_expired)
                claims = verified.claims
            except OtwardError as exc:
                self._refuse_bundle(token, exc.message, when, source)
                return BundleOutcome(False, None, exc.message)
            if claims.version == self._version and self._bundle_token is not None:
                if token.strip() == self._bundle_token:
                    return BundleOutcome(
                        False, claims.version, f"bundle {claims.version} is already installed"
                    )
                reason = f"bundle version {claims.version} is already installed with other content"
                self._refuse_bundle(token, reason, when, source)
                return BundleOutcome(False, None, reason)
            if source != "state":
                write_atomic(self._bundle_path, token.strip().encode() + b"\n")
            self._bundle, self._bundle_token, self._decider = claims, token.strip(), decider
            self._verifier.trust_bundle_signers(verified, when)
            if claims.version != self._version:
                self._version = claims.version
                self._save_state()
            if source != "state":
                self._record(
                    AuditEvent(
                        time=when,
                        host=self._host,
                        component=_COMPONENT,
                        type=EventType.POLICY_CHANGED,
                        subject=self.asset,
                        outcome=Outcome.SUCCESS,
                        reason=f"policy bundle {claims.version} installed",
                        details={
                            "version": str(claims.version),
                            "expires_at": f"{claims.expires_at:%Y-%m-%dT%H:%M:%SZ}",
                            "source": source,
                        },
                    )
                )
            return BundleOutcome(True, claims.version, f"bundle {claims.version} installed")

    def _check_bundle(self, token: str, at: datetime, keep_expired: bool) -> tuple[VerifiedBundle, Decider]:
        held = self._bundle.revoked_signers if self._bundle is not None else frozenset()
        verified = self._verifier.verify_bundle(token, at, refused_signers=held)
        claims = verified.claims
        if claims.asset != self.asset:
            raise PolicyViolationError(
                f"bundle is for asset '{claims.asset}', not '{self.asset}'", rule="bundle-asset"
            )
        if claims.version < self._version:
            raise PolicyViolationError(
                f"rollback: bundle version {claims.version} is older than version {self._version} held",
                rule="bundle-rollback",
            )
        if claims.issued_at > at + self._skew:
            raise PolicyViolationError(
                f"bundle issued in the future ({claims.issued_at:%Y-%m-%dT%H:%M:%SZ}): check the clock",
                rule="bundle-time",
            )
        if claims.is_expired(at) and not keep_expired:
            raise PolicyViolationError(
                f"bundle {claims.version} expired at {claims.expires_at:%Y-%m-%dT%H:%M:%SZ}",
                rule="bundle-expired",
            )
        try:
            access_slice = AccessSlice.from_dict(claims.slice)
        except ValueError as exc:
            raise PolicyViolationError(
                f"bundle's access slice is unusable: {exc}", rule="bundle-slice"
            ) from None
        if access_slice.asset != self.asset:
            raise PolicyViolationError("bundle's access slice is for another asset", rule="bundle-asset")
        try:
            decider = Decider(access_slice)
        except Exception as exc:  # noqa: BLE001 - whatever Cedar rejects, the bundle is refused (fail closed)
            raise PolicyViolationError(
                f"bundle's policies do not parse: {exc}", rule="bundle-slice"
            ) from None
        return verified, decider

    def _refuse_bundle(self, token: str, reason: str, at: datetime, source: str) -> None:
        """Record a refusal once per bundle and reason: a sync that offers the same bad bundle every
        interval does not fill the trail."""
        key = hashlib.sha256(token.strip().encode(errors="replace") + b"\n" + reason.encode()).digest()
        if key == self._last_refused:
            return
        self._last_refused = key
        self._record_bundle_refused(reason, at, source)

    def _record_bundle_refused(self, reason: str, at: datetime, source: str) -> None:
        self._record(
            AuditEvent(
                time=at,
                host=self._host,
                component=_COMPONENT,
                type=EventType.ACCESS_BUNDLE_REFUSED,
                subject=self.asset,
                outcome=Outcome.FAILURE,
                reason=reason,
                details={"source": source, "version_held": str(self._version)},
            )
        )

    # --- the exchange ---------------------------------------------------------------------------

    def challenge(
        self, credential: str, function: str, *, at: datetime | None = None, source: str | None = None
    ) -> Challenge:
        """Step 1: the holder presents its credential and the function it wants; answer with a nonce.

        ``source`` (the reader's address) bounds the nonces one source can hold pending. A credential
        without the form of one is refused (ParseError) before a nonce is taken: junk costs nothing."""
        validate_identifier(function, "function")
        credential = credential.strip()
        validate_credential_form(credential)
        when = at or self._clock()
        with self._lock:
            return self._nonces.issue(
                self._random(32),
                asset=self.asset,
                function=function,
                credential=credential,
                at=when,
                source=source,
            )

    def answer(
        self, nonce: bytes, signature: bytes, *, at: datetime | None = None, source: str | None = None
    ) -> Verdict:
        """Step 2: the holder's signature over the nonce; decide, record in the trail, then answer."""
        when = at or self._clock()
        with self._lock:
            pending = self._nonces.take(nonce, when)
            bundle, decider = self._bundle, self._decider
        if pending is None:
            verdict = Verdict(
                False,
                "unknown, expired or already used nonce (replayed or stale answer)",
                "?",
                proof_failed=True,
            )
            self._record_decision(verdict, when, source)
            return verdict
        function = pending.challenge.function
        verified: VerifiedCredential | None = None
        problem: str | None = None
        try:
            verified = self._verifier.credential(pending.credential, when)
        except OtwardError as exc:
            problem = f"credential refused: {exc.message}"
        signature_ok = verified is not None and verify_data(
            verified.holder_key, signature, answer_message(self.asset, function, nonce)
        )
        verdict = evaluate(
            function=function,
            bundle=bundle,
            credential=verified.claims if verified is not None else None,
            credential_problem=problem,
            holder_signature_valid=signature_ok,
            decide=decider.decide if decider is not None else None,
            at=when,
            skew=self._skew,
        )
        self._record_decision(verdict, when, source)
        return verdict

    def _record_decision(self, verdict: Verdict, at: datetime, source: str | None) -> None:
        details: dict[str, str] = {"asset": self.asset, "function": verdict.function}
        if verdict.credential_id:
            details["credential_id"] = verdict.credential_id
        if verdict.bundle_version is not None:
            details["bundle_version"] = str(verdict.bundle_version)
        if verdict.policies:
            details["policies"] = ",".join(verdict.policies)
        if verdict.local_time:
            details["local_time"] = verdict.local_time
        self._record(
            AuditEvent(
                time=at,
                host=self._host,
                component=_COMPONENT,
                type=EventType.ACCESS_DECIDED,
                subject=verdict.person or "(unknown)",
                outcome=Outcome.SUCCESS if verdict.allowed else Outcome.FAILURE,
                reason=verdict.reason,
                source=source,
                details=details,
            )
        )

    def _record(self, event: AuditEvent) -> None:
        self.trail.append(event)

    # --- operations -----------------------------------------------------------------------------

    def status(self) -> Mapping[str, object]:
        bundle = self._bundle
        now = self._clock()
        return {
            "asset": self.asset,
            "bundle_version": bundle.version if bundle else None,
            "bundle_expires_at": f"{bundle.expires_at:%Y-%m-%dT%H:%M:%SZ}" if bundle else None,
            "bundle_expired": bundle.is_expired(now) if bundle else None,
            "highest_version": self._version,
            "credential_signers": list(self._verifier.known_signers),
            "trail_sequence": self.trail.last_sequence,
            "trail_sync": self.trail.sync_mode,
            "trail_synced_sequence": self.trail.synced_sequence,
            "acked_sequence": self._acked,
            "pending_nonces": len(self._nonces),
        }

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.trail.close()

    def __enter__(self) -> Gatekeeper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

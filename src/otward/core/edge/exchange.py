"""The access exchange at an asset: single-use nonces and the order of the checks.

Holder: "credential C, function F". Gatekeeper: "sign this nonce". Holder:
signature over :func:`~otward.core.edge.formats.answer_message`. Gatekeeper:
allow or deny with the reason. This module keeps the pending nonces (random bytes
and the clock come from the caller) and decides from already-verified inputs; the
token verification lives in :mod:`otward.edge.tokens` because it needs PyJWT.
Every check fails closed: anything missing, late or odd is a deny with a reason.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from otward.core.access.decision import Decision
from otward.core.edge.formats import BundleClaims, CredentialClaims

__all__ = ["Challenge", "NonceBook", "PendingAnswer", "Verdict", "evaluate"]


@dataclass(frozen=True)
class Challenge:
    """What the gatekeeper sends back to a holder: sign this nonce for this asset and function."""

    nonce: bytes
    asset: str
    function: str
    expires_at: datetime


@dataclass(frozen=True)
class PendingAnswer:
    """A nonce handed out and not yet answered: which credential and function it was for."""

    challenge: Challenge
    credential: str
    source: str | None = None


@dataclass(frozen=True)
class Verdict:
    """The answer to an access request, with what the trail records about it."""

    allowed: bool
    reason: str
    function: str
    person: str | None = None
    credential_id: str | None = None
    policies: tuple[str, ...] = ()
    bundle_version: int | None = None
    local_time: str = ""
    # The request proved nothing: an unknown, used or expired nonce, a credential that does not verify,
    # or an answer not signed by its holder key. Honest holders rarely cause these (a policy deny, an
    # expired or revoked credential do not count), so an API may limit the sources that do.
    proof_failed: bool = False

    @property
    def decision(self) -> str:
        return "allow" if self.allowed else "deny"


class NonceBook:
    """Nonces handed out and not yet answered; each can be taken once, before it expires.

    Bounded twice: one source (a reader's address) holds at most ``per_source`` pending nonces,
    its oldest dropped first, so a flood of challenges from one source cannot push out the nonces
    other holders are answering; and at most ``capacity`` are pending in all, the oldest dropped
    first, so memory stays bounded whatever the sources (a holder whose nonce was dropped is denied
    and asks again).
    """

    def __init__(
        self, *, ttl: timedelta = timedelta(seconds=30), capacity: int = 10_000, per_source: int = 64
    ) -> None:
        if ttl <= timedelta(0) or capacity < 1 or per_source < 1:
            raise ValueError("nonce ttl, capacity and per-source bound must be positive")
        self.ttl = ttl
        self._capacity = capacity
        self._per_source = per_source
        self._pending: OrderedDict[bytes, PendingAnswer] = OrderedDict()
        self._by_source: dict[str | None, dict[bytes, None]] = {}  # each source's nonces, oldest first

    def issue(
        self,
        nonce: bytes,
        *,
        asset: str,
        function: str,
        credential: str,
        at: datetime,
        source: str | None = None,
    ) -> Challenge:
        if len(nonce) < 16:
            raise ValueError("a nonce needs at least 128 random bits")
        if nonce in self._pending:
            raise ValueError("nonce reused")
        own = self._by_source.get(source, {})
        if len(own) >= self._per_source:  # one over at most: every issue keeps both bounds
            self._forget(next(iter(own)))
        if len(self._pending) >= self._capacity:
            self._forget(next(iter(self._pending)))
        challenge = Challenge(nonce=nonce, asset=asset, function=function, expires_at=at + self.ttl)
        self._pending[nonce] = PendingAnswer(challenge, credential, source)
        self._by_source.setdefault(source, {})[nonce] = None
        return challenge

    def take(self, nonce: bytes, at: datetime) -> PendingAnswer | None:
        """The pending answer for ``nonce``, removed so it can never be used again; None if the nonce was
        never issued, was already answered or has expired."""
        pending = self._forget(nonce)
        self.purge(at)
        if pending is None or at >= pending.challenge.expires_at:
            return None
        return pending

    def purge(self, at: datetime) -> None:
        """Forget nonces that have expired (they are the oldest, so stop at the first live one)."""
        while self._pending:
            nonce, pending = next(iter(self._pending.items()))
            if at < pending.challenge.expires_at:
                break
            self._forget(nonce)

    def pending_from(self, source: str | None) -> int:
        """How many nonces ``source`` holds unanswered."""
        return len(self._by_source.get(source, ()))

    def _forget(self, nonce: bytes) -> PendingAnswer | None:
        pending = self._pending.pop(nonce, None)
        if pending is not None:
            own = self._by_source[pending.source]
            del own[nonce]
            if not own:
                del self._by_source[pending.source]
        return pending

    def __len__(self) -> int:
        return len(self._pending)


def evaluate(
    *,
    function: str,
    bundle: BundleClaims | None,
    credential: CredentialClaims | None,
    credential_problem: str | None,
    holder_signature_valid: bool,
    decide: Callable[[str, str, datetime], Decision] | None,
    at: datetime,
    skew: timedelta,
) -> Verdict:
    """Allow only if every check passes, in this order: a policy bundle is held; the credential verified
    and is valid at ``at`` (``skew`` tolerated); the holder signed this nonce with the credential's key;
    the credential is not revoked; the bundle has not expired (or ``function`` fails open); the policy
    allows the person to use ``function`` at ``at``."""
    version = bundle.version if bundle is not None else None
    if bundle is None or decide is None:
        return Verdict(False, "no valid policy bundle is installed", function)
    if credential is None:
        return Verdict(
            False,
            credential_problem or "credential not verified",
            function,
            bundle_version=version,
            proof_failed=True,
        )
    claims = credential

    def deny(reason: str, *, proof_failed: bool = False) -> Verdict:
        return Verdict(
            False,
            reason,
            function,
            person=claims.person,
            credential_id=claims.credential_id,
            bundle_version=version,
            proof_failed=proof_failed,
        )

    problem = credential.validity_problem(at, skew)
    if problem is not None:
        return deny(problem)
    if not holder_signature_valid:
        return deny(
            "answer not signed by the credential's key for this nonce, asset and function", proof_failed=True
        )
    if credential.credential_id in bundle.revoked:
        return deny("credential is revoked")
    fail_open_note = ""
    if bundle.is_expired(at):
        expired = f"policy bundle {bundle.version} expired at {bundle.expires_at:%Y-%m-%dT%H:%M:%SZ}"
        if function not in bundle.fail_open:
            return deny(f"{expired}; '{function}' fails closed")
        fail_open_note = f" ({expired}; '{function}' fails open: decided by the last bundle)"
    decision = decide(credential.person, function, at)
    return Verdict(
        decision.allowed,
        decision.reason + fail_open_note,
        function,
        person=credential.person,
        credential_id=credential.credential_id,
        policies=decision.policies,
        bundle_version=version,
        local_time=decision.local_time,
    )

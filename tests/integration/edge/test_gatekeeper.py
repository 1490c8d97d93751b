"""The gatekeeper against a real installation: bundles, credentials and every way an exchange fails."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from otward.adapters.audit_file import FileAuditTrail
from otward.core.audit import EventType, Outcome
from otward.core.edge.formats import BundleClaims, answer_message, certificate_thumbprint
from otward.core.keys import sign_data
from otward.edge.holder import answer_challenge, run_exchange
from otward.edge.tokens import sign_bundle
from otward.errors import NotFoundError, ParseError, UnsupportedAlgorithmError
from otward.services.signers import AUDIT_SIGNER

from .conftest import PLANT, hours

pytestmark = pytest.mark.integration


def _credential(plant, key, person="carla", ttl=None) -> str:
    return plant.edge.issue_credential(person, key.public_key(), ttl=ttl or hours(12)).token


def _events(gatekeeper, type_: EventType):
    return [r.event for r in gatekeeper.trail.records() if r.event.type is type_]


def test_allowed_inside_shift_and_denied_outside(plant, holder_key, make_gatekeeper, clock):
    gatekeeper = make_gatekeeper()
    assert gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token).installed
    credential = _credential(plant, holder_key)
    allowed = run_exchange(gatekeeper, credential, holder_key, "start")
    assert allowed.allowed, allowed.reason
    assert allowed.person == "carla"
    assert allowed.bundle_version == 1
    clock.advance(hours(8))  # 16:00 Berlin: after the early shift
    denied = run_exchange(gatekeeper, credential, holder_key, "start")
    assert not denied.allowed
    assert "no grant" in denied.reason
    decided = _events(gatekeeper, EventType.ACCESS_DECIDED)
    assert [e.outcome for e in decided] == [Outcome.SUCCESS, Outcome.FAILURE]
    assert decided[0].component == "edge"
    assert decided[0].subject == "carla"
    assert decided[0].details["function"] == "start"
    assert gatekeeper.trail.check().ok


def test_replayed_answer_is_refused(plant, holder_key, make_gatekeeper):
    gatekeeper = make_gatekeeper()
    gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token)
    challenge = gatekeeper.challenge(_credential(plant, holder_key), "start")
    signature = answer_challenge(holder_key, challenge)
    assert gatekeeper.answer(challenge.nonce, signature).allowed
    replayed = gatekeeper.answer(challenge.nonce, signature)
    assert not replayed.allowed
    assert "already used" in replayed.reason
    assert _events(gatekeeper, EventType.ACCESS_DECIDED)[-1].outcome is Outcome.FAILURE


def test_stale_answer_is_refused(plant, holder_key, make_gatekeeper, clock):
    gatekeeper = make_gatekeeper()
    gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token)
    challenge = gatekeeper.challenge(_credential(plant, holder_key), "start")
    clock.advance(timedelta(seconds=31))  # the nonce lives 30 s
    verdict = gatekeeper.answer(challenge.nonce, answer_challenge(holder_key, challenge))
    assert not verdict.allowed
    assert "expired" in verdict.reason


@pytest.mark.parametrize(
    ("case", "signed"),
    [
        ("another key", lambda other, c: sign_data(other, answer_message(c.asset, c.function, c.nonce))),
        ("another function", lambda own, c: sign_data(own, answer_message(c.asset, "stop", c.nonce))),
        ("another asset", lambda own, c: sign_data(own, answer_message("mixer-2", c.function, c.nonce))),
        ("another nonce", lambda own, c: sign_data(own, answer_message(c.asset, c.function, bytes(32)))),
        ("no domain", lambda own, c: sign_data(own, c.nonce)),
    ],
)
def test_foreign_answer_is_refused(plant, holder_key, make_gatekeeper, case, signed):
    gatekeeper = make_gatekeeper()
    gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token)
    challenge = gatekeeper.challenge(_credential(plant, holder_key), "start")
    signer = ec.generate_private_key(ec.SECP256R1()) if case == "another key" else holder_key
    verdict = gatekeeper.answer(challenge.nonce, signed(signer, challenge))
    assert not verdict.allowed, case
    assert "not signed by the credential's key" in verdict.reason


def test_expired_credential_is_refused_after_the_skew(plant, holder_key, make_gatekeeper, clock):
    gatekeeper = make_gatekeeper()
    gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token)
    credential = _credential(plant, holder_key, ttl=hours(1))
    clock.advance(hours(1) + timedelta(seconds=30))  # expired, but within the 60 s tolerance
    assert run_exchange(gatekeeper, credential, holder_key, "start").allowed
    clock.advance(timedelta(seconds=31))
    verdict = run_exchange(gatekeeper, credential, holder_key, "start")
    assert not verdict.allowed
    assert "credential expired" in verdict.reason


def test_clock_skew_beyond_tolerance_is_refused(plant, holder_key, make_gatekeeper, clock):
    """The asset's clock runs behind the issuer's: a credential issued 'in its future' is refused
    beyond the tolerance and accepted within it."""
    gatekeeper = make_gatekeeper(skew=timedelta(seconds=60))
    gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token)
    clock.advance(timedelta(minutes=10))  # the edge signer (made with the bundle) is older than this
    credential = _credential(plant, holder_key)
    behind = clock.now - timedelta(seconds=59)
    assert run_exchange(gatekeeper, credential, holder_key, "start", at=behind).allowed
    too_far = clock.now - timedelta(seconds=61)
    verdict = run_exchange(gatekeeper, credential, holder_key, "start", at=too_far)
    assert not verdict.allowed
    assert "not yet valid" in verdict.reason


def test_revoked_credential_is_refused_once_the_bundle_says_so(plant, holder_key, make_gatekeeper):
    gatekeeper = make_gatekeeper()
    gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token)
    issued = plant.edge.issue_credential("carla", holder_key.public_key(), ttl=hours(12))
    assert run_exchange(gatekeeper, issued.token, holder_key, "start").allowed  # now cached
    plant.edge.revoke_credential(issued.record.credential_id)
    newer = plant.edge.bundle_after("reactor-1", gatekeeper.version)
    assert newer is not None
    assert gatekeeper.install_bundle(newer.token).installed
    verdict = run_exchange(gatekeeper, issued.token, holder_key, "start")
    assert not verdict.allowed
    assert verdict.reason == "credential is revoked"
    assert plant.edge.credentials("carla")[0].revoked_at is not None


def test_disabled_person_is_denied_after_the_next_bundle(plant, holder_key, make_gatekeeper):
    gatekeeper = make_gatekeeper()
    gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token)
    credential = _credential(plant, holder_key)
    assert plant.edge.bundle_after("reactor-1", gatekeeper.version) is None  # nothing changed
    plant.access.disable_person("carla")
    newer = plant.edge.bundle_after("reactor-1", gatekeeper.version)
    assert newer is not None
    assert newer.version == 2
    gatekeeper.install_bundle(newer.token)
    verdict = run_exchange(gatekeeper, credential, holder_key, "start")
    assert not verdict.allowed
    assert verdict.reason == "person is disabled"


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["fail_open"] = ["start"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_tampered_bundle_is_refused_and_recorded(plant, make_gatekeeper):
    gatekeeper = make_gatekeeper()
    tampered = _tamper(plant.edge.issue_bundle("reactor-1").token)
    outcome = gatekeeper.install_bundle(tampered)
    assert not outcome.installed
    assert "signature" in outcome.reason
    assert gatekeeper.bundle is None
    assert not gatekeeper.install_bundle(tampered, source="sync").installed  # offered again: one record
    refused = _events(gatekeeper, EventType.ACCESS_BUNDLE_REFUSED)
    assert len(refused) == 1
    assert refused[0].outcome is Outcome.FAILURE


def test_bundle_signed_by_another_certificate_of_the_ca_is_refused(plant, make_gatekeeper, clock):
    """The audit signer is certified by the same CA but lacks the edge signer's EKU."""
    key, certificate = plant.signers.get(AUDIT_SIGNER)
    chain = [certificate, *plant.authorities.certificate_chain("issuing")]
    real = plant.edge.issue_bundle("reactor-1")
    claims = BundleClaims(
        asset="reactor-1",
        version=99,
        issued_at=real.issued_at,
        expires_at=real.expires_at,
        slice=plant.access.asset_slice("reactor-1").to_dict(),
        revoked=frozenset(),
        fail_open=frozenset({"start"}),
    )
    gatekeeper = make_gatekeeper()
    outcome = gatekeeper.install_bundle(sign_bundle(claims, key, chain))
    assert not outcome.installed
    assert "signer chain does not verify" in outcome.reason
    assert "id-kp-otwardEdgeSigning missing" in outcome.reason  # it has the audit signer's EKU only


def test_bundle_of_another_asset_is_refused(plant, make_gatekeeper):
    gatekeeper = make_gatekeeper("reactor-1")
    outcome = gatekeeper.install_bundle(plant.edge.issue_bundle("mixer-2").token)
    assert not outcome.installed
    assert "mixer-2" in outcome.reason


def test_rolled_back_bundle_is_refused_also_after_a_restart(plant, make_gatekeeper):
    first = plant.edge.issue_bundle("reactor-1")
    second = plant.edge.issue_bundle("reactor-1")
    assert (first.version, second.version) == (1, 2)
    gatekeeper = make_gatekeeper()
    assert gatekeeper.install_bundle(second.token).installed
    assert "rollback" in gatekeeper.install_bundle(first.token).reason
    gatekeeper.close()
    restarted = make_gatekeeper()  # same state directory
    assert restarted.version == 2
    assert restarted.bundle is not None
    assert restarted.bundle.version == 2
    assert not restarted.install_bundle(first.token).installed
    assert restarted.version == 2
    assert len(_events(restarted, EventType.ACCESS_BUNDLE_REFUSED)) == 2


def test_same_version_with_other_content_is_refused(plant, make_gatekeeper):
    real = plant.edge.issue_bundle("reactor-1")
    gatekeeper = make_gatekeeper()
    gatekeeper.install_bundle(real.token)
    key, chain = plant.edge.signer()
    claims = BundleClaims(
        asset="reactor-1",
        version=real.version,
        issued_at=real.issued_at,
        expires_at=real.expires_at,
        slice=plant.access.asset_slice("reactor-1").to_dict(),
        revoked=frozenset(),
        fail_open=frozenset({"start"}),
    )
    outcome = gatekeeper.install_bundle(sign_bundle(claims, key, chain))
    assert not outcome.installed
    assert "other content" in outcome.reason
    assert gatekeeper.install_bundle(real.token).reason == "bundle 1 is already installed"


def test_expired_bundle_is_refused_when_offered(plant, make_gatekeeper, clock):
    token = plant.edge.issue_bundle("reactor-1", ttl=hours(1)).token
    clock.advance(hours(2))
    gatekeeper = make_gatekeeper()
    outcome = gatekeeper.install_bundle(token)
    assert not outcome.installed
    assert "expired" in outcome.reason


def test_expired_bundle_fails_closed_except_for_fail_open_functions(plant, make_gatekeeper, clock):
    anna = ec.generate_private_key(ec.SECP256R1())
    credential = _credential(plant, anna, person="anna", ttl=hours(48))
    gatekeeper = make_gatekeeper()
    gatekeeper.install_bundle(
        plant.edge.issue_bundle("reactor-1", ttl=hours(1), fail_open=["read-data"]).token
    )
    clock.advance(hours(2))  # the bundle expired and no newer one arrived
    closed = run_exchange(gatekeeper, credential, anna, "start")
    assert not closed.allowed
    assert "fails closed" in closed.reason
    opened = run_exchange(gatekeeper, credential, anna, "read-data")
    assert opened.allowed, opened.reason
    assert "fails open" in opened.reason
    # still no way around the policy, the credential or the holder's proof:
    carla = ec.generate_private_key(ec.SECP256R1())
    stranger = run_exchange(gatekeeper, _credential(plant, carla, person="hanna"), carla, "read-data")
    assert not stranger.allowed
    # and a restart keeps the expired bundle for the fail-open functions
    gatekeeper.close()
    restarted = make_gatekeeper()
    assert run_exchange(restarted, credential, anna, "read-data").allowed
    assert not run_exchange(restarted, credential, anna, "start").allowed


def test_no_bundle_denies_everything(plant, holder_key, make_gatekeeper):
    gatekeeper = make_gatekeeper()
    verdict = run_exchange(gatekeeper, _credential(plant, holder_key), holder_key, "start")
    assert not verdict.allowed
    assert "no valid policy bundle" in verdict.reason


def test_credential_of_another_installation_is_refused(plant, holder_key, make_gatekeeper, tmp_path):
    from otward.config import load_settings
    from otward.core.keys import KeyType
    from otward.services.bootstrap import initialize
    from otward.services.pki import Pki

    initialize(tmp_path / "other", key_type=KeyType.EC_P256, organization="Other")
    other = Pki.open(load_settings(tmp_path / "other"))
    try:
        other.access.import_yaml(PLANT.read_text())
        foreign = other.edge.issue_credential("carla", holder_key.public_key(), ttl=hours(12)).token
        foreign_bundle = other.edge.issue_bundle("reactor-1").token
        foreign_signer = certificate_thumbprint(other.edge.signer()[1][0])
    finally:
        other.close()
    gatekeeper = make_gatekeeper()
    assert not gatekeeper.install_bundle(foreign_bundle).installed  # its chain ends at another root
    gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token)
    verdict = run_exchange(gatekeeper, foreign, holder_key, "start")
    assert not verdict.allowed
    assert verdict.reason == (
        f"credential refused: credential signer {foreign_signer} unknown at this asset:"
        " install a current bundle"
    )
    assert _events(gatekeeper, EventType.ACCESS_DECIDED)[-1].reason == verdict.reason
    own = _credential(plant, holder_key)
    assert run_exchange(gatekeeper, own, holder_key, "start").allowed


def test_credential_names_its_signer_which_is_known_from_the_held_bundle(plant, holder_key, make_gatekeeper):
    """The credential carries no certificates; the signer is resolved from the bundle's verified chain,
    also after a restart (the bundle is reloaded and verified again from the state directory)."""
    import jwt

    credential = _credential(plant, holder_key)
    header = jwt.get_unverified_header(credential)
    assert set(header) == {"alg", "typ", "x5t#S256"}
    assert header["x5t#S256"] == certificate_thumbprint(plant.edge.signer()[1][0])
    assert len(credential) < 1000
    gatekeeper = make_gatekeeper()
    gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token)
    assert run_exchange(gatekeeper, credential, holder_key, "start").allowed
    gatekeeper.close()
    restarted = make_gatekeeper()
    assert run_exchange(restarted, credential, holder_key, "start").allowed


def test_batch_trail_sync_answers_before_the_fsync_and_pushes_only_durable_records(
    plant, holder_key, make_gatekeeper, tmp_path
):
    gatekeeper = make_gatekeeper(trail_sync="batch", trail_sync_interval=timedelta(seconds=10))
    gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token)
    credential = _credential(plant, holder_key)
    assert run_exchange(gatekeeper, credential, holder_key, "start").allowed
    assert gatekeeper.trail.last_sequence == 2  # policy.changed + access.decided, written
    assert list(gatekeeper.trail.records()) == []  # but not fsynced yet: nothing to push
    assert gatekeeper.status()["trail_sync"] == "batch"
    gatekeeper.close()  # fsyncs the rest
    with FileAuditTrail(tmp_path / "state" / "trail.jsonl") as trail:
        assert [r.event.type for r in trail.records()] == [EventType.POLICY_CHANGED, EventType.ACCESS_DECIDED]
    restarted = make_gatekeeper(trail_sync="batch", trail_sync_interval=timedelta(milliseconds=1))
    assert run_exchange(restarted, credential, holder_key, "stop").decision in ("allow", "deny")
    restarted.close()
    with FileAuditTrail(tmp_path / "state" / "trail.jsonl") as trail:
        assert trail.last_sequence == 3
        assert trail.check().ok


def test_unknown_trail_sync_mode_is_refused(plant, make_gatekeeper):
    from otward.errors import ConfigError

    with pytest.raises(ConfigError, match="trail sync"):
        make_gatekeeper(trail_sync="never")
    with pytest.raises(ConfigError, match="interval"):
        make_gatekeeper(trail_sync="batch", trail_sync_interval=timedelta(0))


def test_a_bundle_is_not_a_credential(plant, holder_key, make_gatekeeper):
    """Too large to be presented at all (typ confusion itself: tests/unit/core/edge)."""
    from otward.errors import InvalidRequestError

    gatekeeper = make_gatekeeper()
    token = plant.edge.issue_bundle("reactor-1").token
    gatekeeper.install_bundle(token)
    with pytest.raises(InvalidRequestError, match="too large"):
        gatekeeper.challenge(token, "start")
    assert gatekeeper.status()["pending_nonces"] == 0


def test_weak_and_unknown_holder_keys_are_refused(plant):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(UnsupportedAlgorithmError):
        plant.edge.issue_credential("carla", weak.public_key(), ttl=hours(1))
    with pytest.raises(NotFoundError):
        plant.edge.issue_credential(
            "nobody", ec.generate_private_key(ec.SECP256R1()).public_key(), ttl=hours(1)
        )


def test_rsa_and_p384_holders_work(plant, make_gatekeeper):
    gatekeeper = make_gatekeeper()
    gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token)
    for key in (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP384R1()),
    ):
        assert run_exchange(gatekeeper, _credential(plant, key), key, "start").allowed


def test_unknown_fail_open_function_is_refused(plant):
    from otward.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="no function 'enter'"):
        plant.edge.issue_bundle("reactor-1", fail_open=["enter"])


def test_bundle_versions_are_never_reused_under_concurrency(pki):
    """On SQLite and PostgreSQL: parallel issuers each get their own version, with no gap."""
    pki.access.import_yaml(PLANT.read_text())
    versions: list[int] = []
    errors: list[BaseException] = []

    def issue() -> None:
        try:
            for _ in range(5):
                versions.append(pki.edge.issue_bundle("reactor-1").version)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=issue) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(versions) == list(range(1, 21))
    assert pki.edge.store.latest_bundle("reactor-1").version == 20


def test_bundle_and_credential_events_are_audited_centrally(plant, holder_key):
    plant.edge.issue_bundle("reactor-1")
    issued = plant.edge.issue_credential("carla", holder_key.public_key(), ttl=hours(1))
    plant.edge.revoke_credential(issued.record.credential_id)
    types = [r.event.type for r in plant.stores.audit.iter_audit()]
    for wanted in (
        EventType.ACCESS_BUNDLE_ISSUED,
        EventType.ACCESS_CREDENTIAL_ISSUED,
        EventType.ACCESS_CREDENTIAL_REVOKED,
    ):
        assert wanted in types
    plant.audit.sign_head()  # the plant's clock is a day past init's head: sign as the service would
    assert plant.audit.verify().check.ok


def test_trail_survives_and_is_checked_on_reopen(plant, holder_key, make_gatekeeper, tmp_path):
    gatekeeper = make_gatekeeper()
    gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token)
    run_exchange(gatekeeper, _credential(plant, holder_key), holder_key, "start")
    gatekeeper.close()
    with FileAuditTrail(tmp_path / "state" / "trail.jsonl") as trail:
        assert trail.check().ok
        assert trail.last_sequence == 2  # policy.changed + access.decided


def test_signer_rotation_keeps_earlier_credentials_working_also_after_a_restart(
    plant, holder_key, make_gatekeeper
):
    """After 'signer rotate edge' the next bundle is signed by the new signer and lists the previous one,
    so credentials it signed keep working until they expire, also after the gatekeeper restarts."""
    gatekeeper = make_gatekeeper()
    gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token)
    old_credential = _credential(plant, holder_key)
    old_signer = plant.edge.signer()[1][0]
    plant.signers.rotate("edge")
    new_signer = plant.edge.signer()[1][0]
    assert new_signer.serial_number != old_signer.serial_number
    new_credential = _credential(plant, holder_key)
    refused = run_exchange(gatekeeper, new_credential, holder_key, "start")
    assert "unknown at this asset" in refused.reason  # the asset has not seen the new signer yet
    newer = plant.edge.bundle_after("reactor-1", gatekeeper.version)
    assert newer is not None  # the rotation alone makes a new bundle due
    assert gatekeeper.install_bundle(newer.token).installed
    assert gatekeeper.status()["credential_signers"] == [
        certificate_thumbprint(new_signer),
        certificate_thumbprint(old_signer),
    ]
    gatekeeper.close()
    restarted = make_gatekeeper()
    assert run_exchange(restarted, old_credential, holder_key, "start").allowed
    assert run_exchange(restarted, new_credential, holder_key, "start").allowed


def test_signer_revoked_at_rotation_is_refused_by_the_asset(plant, holder_key, make_gatekeeper):
    """A compromised edge key: rotate and revoke. The next bundle names the old signer revoked; its
    credentials stop working, and a bundle forged with the old key is refused although its version is
    higher and its chain still verifies."""
    from cryptography import x509

    gatekeeper = make_gatekeeper()
    gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token)
    old_credential = _credential(plant, holder_key)
    old_key, old_chain = plant.edge.signer()
    plant.signers.rotate("edge", revoke_previous=x509.ReasonFlags.key_compromise)
    assert plant.stores.certificates.get_certificate(old_chain[0].serial_number).revoked_at is not None
    newer = plant.edge.bundle_after("reactor-1", gatekeeper.version)
    assert (
        certificate_thumbprint(old_chain[0])
        in BundleClaims.from_payload(
            json.loads(base64.urlsafe_b64decode(newer.token.split(".")[1] + "=="))
        ).revoked_signers
    )
    assert gatekeeper.install_bundle(newer.token).installed
    refused = run_exchange(gatekeeper, old_credential, holder_key, "start")
    assert not refused.allowed
    assert "unknown at this asset" in refused.reason
    forged_claims = dataclasses.replace(
        gatekeeper.bundle, version=gatekeeper.version + 10, revoked_signers=frozenset()
    )
    forged = sign_bundle(forged_claims, old_key, old_chain)
    outcome = gatekeeper.install_bundle(forged)
    assert not outcome.installed
    assert "revoked edge signer" in outcome.reason


def test_a_revoked_current_signer_signs_nothing_until_rotated(plant):
    from cryptography import x509

    from otward.errors import PolicyViolationError

    current = plant.edge.signer()[1][0]
    plant.revocation.revoke(current.serial_number, x509.ReasonFlags.key_compromise)
    with pytest.raises(PolicyViolationError, match="signer rotate edge"):
        plant.edge.issue_bundle("reactor-1")
    assert plant.signers.rotate_if_due("edge")  # the service's housekeeping does this
    assert plant.edge.issue_bundle("reactor-1").version == 1


# --- found by the fuzz target (tests/fuzz/edge/test_gatekeeper.py) ------------------------------


def _resigned(plant, token: str, payload: bytes) -> str:
    """``token`` with ``payload`` instead of its own, signed again by the real edge signer."""
    from otward.edge.tokens import _JWS, signing_algorithm

    key, _ = plant.edge.signer()
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    header.pop("alg")
    return _JWS.encode(payload, key, algorithm=signing_algorithm(key), headers=header)


def _payload(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


def test_a_credential_header_with_an_algorithm_that_is_not_a_string_is_refused(
    plant, holder_key, make_gatekeeper
):
    """'alg': [] raised TypeError (unhashable) in the form check, before any signature is looked at."""
    gatekeeper = make_gatekeeper()
    credential = _credential(plant, holder_key)
    header = json.loads(base64.urlsafe_b64decode(credential.split(".")[0] + "=="))
    header["alg"] = []
    forged = base64.urlsafe_b64encode(json.dumps(header).encode()).decode().rstrip("=")
    with pytest.raises(ParseError) as info:
        gatekeeper.challenge(".".join([forged, *credential.split(".")[1:]]), "start")
    assert info.value.rule == "credential-format"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (lambda claims: b'{"exp":' + b"[" * 5000 + b"]" * 5000 + b"}", "not JSON"),
        (lambda claims: json.dumps({**claims, "exp": 10**12}).encode(), "'exp' must be a NumericDate"),
        (lambda claims: json.dumps({**claims, "iat": 2**63}).encode(), "'iat' must be a NumericDate"),
    ],
    ids=["nested", "exp-beyond-9999", "iat-beyond-time_t"],
)
def test_a_signed_bundle_with_unreadable_claims_is_refused_with_a_reason(
    plant, make_gatekeeper, payload, reason
):
    """RecursionError (deep JSON) and OverflowError/OSError/ValueError (NumericDates beyond year 9999)
    escaped install_bundle, which catches only otward errors."""
    bundle = plant.edge.issue_bundle("reactor-1").token
    outcome = make_gatekeeper().install_bundle(_resigned(plant, bundle, payload(_payload(bundle))))
    assert not outcome.installed
    assert reason in outcome.reason


def test_a_signed_credential_valid_beyond_9999_is_refused(plant, holder_key, make_gatekeeper):
    gatekeeper = make_gatekeeper()
    gatekeeper.install_bundle(plant.edge.issue_bundle("reactor-1").token)
    credential = _credential(plant, holder_key)
    forged = _resigned(plant, credential, json.dumps({**_payload(credential), "exp": 10**12}).encode())
    verdict = run_exchange(gatekeeper, forged, holder_key, "start")
    assert not verdict.allowed
    assert "NumericDate" in verdict.reason


def test_a_bundle_whose_x5c_certificate_cannot_be_read_is_refused(plant, make_gatekeeper):
    """Found after scripts/fuzz-deep met the same TypeError in CRL names: an x5c certificate whose CN
    is a BIT STRING made cryptography raise TypeError while the chain was checked, out of
    install_bundle (an unauthenticated input: the chain is what is being verified)."""
    token = plant.edge.issue_bundle("reactor-1").token
    segment, payload, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(segment + "=="))
    der = base64.b64decode(header["x5c"][0])
    cn = der.index(b"\x06\x03\x55\x04\x03\x0c")  # the first CN (the issuer's), as UTF8String
    header["x5c"][0] = base64.b64encode(der[: cn + 5] + b"\x03" + der[cn + 6 :]).decode()
    forged = base64.urlsafe_b64encode(json.dumps(header).encode()).decode().rstrip("=")
    outcome = make_gatekeeper().install_bundle(f"{forged}.{payload}.{signature}")
    assert not outcome.installed
    assert "signer chain does not verify" in outcome.reason  # an unreadable certificate chains nowhere


def test_a_bundle_whose_x5c_certificate_has_an_unknown_version_is_refused(plant, make_gatekeeper):
    """Found by the -m fuzz run of tests/fuzz/edge: cryptography raises InvalidVersion (not a
    ValueError) for a certificate version other than v1 or v3, out of install_bundle."""
    token = plant.edge.issue_bundle("reactor-1").token
    segment, payload, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(segment + "=="))
    der = base64.b64decode(header["x5c"][0])
    version = der.index(b"\xa0\x03\x02\x01\x02")  # [0] EXPLICIT INTEGER 2 (v3)
    header["x5c"][0] = base64.b64encode(der[: version + 4] + b"\x03" + der[version + 5 :]).decode()
    forged = base64.urlsafe_b64encode(json.dumps(header).encode()).decode().rstrip("=")
    outcome = make_gatekeeper().install_bundle(f"{forged}.{payload}.{signature}")
    assert not outcome.installed
    assert "not a certificate" in outcome.reason

"""Bearer tokens: one shape, told apart by prefix; secrets checked in constant time."""

from __future__ import annotations

from otward.services.bearer import BearerFormat, secret_hash, secret_matches


def test_a_token_parses_only_as_its_own_kind():
    api, enrollment, gatekeeper = BearerFormat("otw"), BearerFormat("otwe"), BearerFormat("otwg")
    token = gatekeeper.new()
    # The secret is base64url and may itself contain "_": split after the fixed-width id.
    secret = token.text.removeprefix(f"otwg_{token.token_id}_")
    assert len(secret) == 43
    assert gatekeeper.parse(token.text) == (token.token_id, secret)
    assert gatekeeper.looks_like(token.text)
    assert api.parse(token.text) is None
    assert enrollment.parse(token.text) is None
    assert not enrollment.looks_like(token.text)
    assert secret_hash(secret) == token.secret_hash


def test_secret_matches_only_a_stored_hash_of_that_secret():
    stored = secret_hash("s3cret")
    assert secret_matches(stored, "s3cret")
    assert not secret_matches(stored, "other")
    assert not secret_matches(None, "s3cret")
    assert not secret_matches(stored, None)
    assert not secret_matches(None, "")

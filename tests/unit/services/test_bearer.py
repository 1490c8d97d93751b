"""Bearer tokens: one shape, told apart by prefix; secrets checked in constant time."""

from __future__ import annotations

from otward.services.bearer import BearerFormat, secret_hash, secret_matches


def test_a_token_parses_only_as_its_own_kind():
    api, enrollment, gatekeeper = BearerFormat("otw"), BearerFormat("otwe"), BearerFormat("otwg")
    token = gatekeeper.new()
    assert gatekeeper.parse(token.text) == (token.token_id, token.text.rsplit("_", 1)[1])
    assert gatekeeper.looks_like(token.text)
    assert api.parse(token.text) is None
    assert enrollment.parse(token.text) is None
    assert not enrollment.looks_like(token.text)
    assert secret_hash(token.text.rsplit("_", 1)[1]) == token.secret_hash


def test_secret_matches_only_a_stored_hash_of_that_secret():
    stored = secret_hash("s3cret")
    assert secret_matches(stored, "s3cret")
    assert not secret_matches(stored, "other")
    assert not secret_matches(None, "s3cret")
    assert not secret_matches(stored, None)
    assert not secret_matches(None, "")

"""Durations, serial numbers, names and key classification."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from otward.core.durations import parse_duration
from otward.core.keys import KeyType, classify_public_key, signature_hash_for
from otward.core.names import dns_name_within, is_valid_dns_name, validate_uri
from otward.core.records import format_serial, parse_serial
from otward.errors import InvalidRequestError, PolicyViolationError, UnsupportedAlgorithmError
from tests.conftest import make_key


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        (" 7D ", timedelta(days=7)),
    ],
)
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d30", "-1d", "1.5d", "30 days"])
def test_bad_durations(text):
    with pytest.raises(InvalidRequestError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["ab:CD:01", "0xabcd01", "ABCD01", "00abcd01"])
def test_serial_spellings(text):
    assert parse_serial(text) == 0xABCD01
    assert format_serial(parse_serial(text)) == "abcd01"


@pytest.mark.parametrize("text", ["", "xyz", "12 34", "f" * 43])
def test_bad_serials(text):
    with pytest.raises(ValueError, match="hexadecimal"):
        parse_serial(text)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("plc-7.plant.example", True),
        ("*.plant.example", True),
        ("*.example", False),
        ("Upper.example", False),
        ("-bad.example", False),
        ("under_score.example", False),
        ("a" * 64 + ".example", False),
        ("localhost", True),
    ],
)
def test_dns_names(name, valid):
    assert is_valid_dns_name(name) is valid


def test_dns_constraint_matching():
    assert dns_name_within("plc.plant-a.example", "plant-a.example")
    assert dns_name_within("plant-a.example", ".plant-a.example")
    assert not dns_name_within("evilplant-a.example", "plant-a.example")


@pytest.mark.parametrize("uri", ["urn:plant:opcua:hmi", "https://plant.example/x", "opc.tcp://hmi:4840"])
def test_good_uris(uri):
    validate_uri(uri)


@pytest.mark.parametrize("uri", ["no-scheme", "urn:nonamespace", "http://a b", "https:", "http://ü.example"])
def test_bad_uris(uri):
    with pytest.raises(PolicyViolationError):
        validate_uri(uri)


def test_key_type_parsing():
    assert KeyType.parse("EC-P384") is KeyType.EC_P384
    with pytest.raises(UnsupportedAlgorithmError, match="unknown key type 'dsa'"):
        KeyType.parse("dsa")


@pytest.mark.parametrize(
    ("key_type", "hash_name"),
    [
        ("ec-p256", "sha256"),
        ("ec-p384", "sha384"),
        ("rsa-2048", "sha256"),
        ("rsa-3072", "sha384"),
        ("ed25519", None),
    ],
)
def test_signature_hash_matches_key_strength(key_type, hash_name):
    key = make_key(key_type)
    algorithm = signature_hash_for(key)
    assert (algorithm.name if algorithm else None) == hash_name
    assert classify_public_key(key.public_key()) is KeyType(key_type)


def test_p521_issuer_keys_are_accepted():
    assert classify_public_key(ec.generate_private_key(ec.SECP521R1()).public_key()) is KeyType.EC_P521

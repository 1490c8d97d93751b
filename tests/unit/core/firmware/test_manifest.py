from __future__ import annotations

import hashlib
import json

import pytest

from otward.core.firmware.manifest import (
    Manifest,
    dump_manifest,
    key_pin,
    parse_digest_name,
    parse_manifest,
    parse_pin,
)
from otward.errors import OtwardError
from tests.unit.core.firmware.pki import NOW, make_key


def manifest(**fields) -> Manifest:
    values = {
        "stage": "kernel",
        "version": 7,
        "size": 3,
        "digest_algorithm": "sha-384",
        "digest": hashlib.sha384(b"abc").digest(),
        "signed_at": NOW,
        "next_stage_key": key_pin(make_key("ec-p256").public_key()),
    }
    return Manifest(**{**values, **fields})


def test_dump_parse_is_the_identity_and_canonical():
    original = manifest()
    text = dump_manifest(original)
    assert parse_manifest(text) == original
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":")).encode()
    body = json.loads(text)
    assert body["image"] == {
        "size": 3,
        "digest": {"algorithm": "sha-384", "value": hashlib.sha384(b"abc").hexdigest()},
    }
    assert body["signed_at"] == "2026-12-07T12:00:00Z"
    assert "next_stage_key" not in json.loads(dump_manifest(manifest(next_stage_key=None)))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"type": "other"}, "type"),
        ({"format": 2}, "format 2"),
        ({"extra": 1}, "unknown field"),
        ({"version": "7"}, "'version' must be an integer"),
        ({"version": True}, "'version' must be an integer"),
        ({"version": -1}, "between 0"),
        ({"version": 2**32}, "between 0"),
        ({"stage": "Boot Loader"}, "stage name"),
        ({"stage": "bootloader\n"}, "stage name"),
        ({"signed_at": "2026-12-07T12:00:00"}, "time zone"),
        ({"next_stage_key": "sha1/abc"}, "key pin"),
        ({"next_stage_key": "sha256/" + "A" * 43 + "=\n"}, "key pin"),
        ({"image": {"size": 3}}, "'digest' must be an object"),
    ],
)
def test_malformed_manifests_are_refused(change, needle):
    body = json.loads(dump_manifest(manifest()))
    body.update(change)
    with pytest.raises(OtwardError, match=needle) as caught:
        parse_manifest(json.dumps(body).encode())
    assert caught.value.rule == "firmware.manifest.unreadable"


@pytest.mark.parametrize("name", ["sha-1", "sha1", "md5", "sha-512", "sha3-256"])
def test_image_digests_other_than_sha256_and_sha384_are_refused(name):
    with pytest.raises(OtwardError) as caught:
        parse_digest_name(name)
    assert caught.value.rule == "firmware.algorithm.weak"
    body = json.loads(dump_manifest(manifest()))
    body["image"]["digest"]["algorithm"] = name
    with pytest.raises(OtwardError) as caught:
        parse_manifest(json.dumps(body).encode())
    assert caught.value.rule == "firmware.algorithm.weak"


def test_digest_length_must_match_its_algorithm():
    with pytest.raises(OtwardError, match="48 bytes"):
        manifest(digest=hashlib.sha256(b"abc").digest())


def test_pin_is_the_spki_sha256():
    key = make_key("rsa-2048").public_key()
    pin = key_pin(key)
    assert pin.startswith("sha256/")
    assert len(parse_pin(pin)) == 32
    with pytest.raises(OtwardError):
        parse_pin(pin[:-2])


def test_deeply_nested_json_is_a_parse_error():
    with pytest.raises(OtwardError) as caught:
        parse_manifest(b"[" * 100_000 + b"]" * 100_000)
    assert caught.value.rule == "firmware.manifest.unreadable"

"""Firmware manifests on hostile DER: only OtwardErrors, and a manifest that still verifies after the
damage says exactly what the signer signed (the damage hit bytes the signature does not cover)."""

from __future__ import annotations

import hashlib
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otward.core.firmware.boot import parse_boot_chain, parse_counters
from otward.core.firmware.envelope import hash_for_name, sign_content
from otward.core.firmware.manifest import Manifest, dump_manifest, key_pin, parse_manifest
from otward.core.firmware.verify import verify_pinned, verify_trusted
from otward.errors import ConfigError, OtwardError
from tests.fuzz.mutate import der_inputs
from tests.fuzz.profile import CRYPTOGRAPHY_WARNINGS, fuzz_settings
from tests.unit.core.firmware.pki import NOW, make_ca, make_signer

pytestmark = [pytest.mark.fuzz, *CRYPTOGRAPHY_WARNINGS]

MANIFEST = Manifest("kernel", 4, 1024, "sha-256", hashlib.sha256(b"k").digest(), NOW)


@cache
def _pki():  # type: ignore[no-untyped-def]
    root = make_ca("fuzz root")
    intermediate = make_ca("fuzz issuing", root)
    signers = [make_signer(intermediate, kind) for kind in ("ec-p256", "rsa-2048")]
    envelopes = [
        sign_content(
            dump_manifest(MANIFEST),
            s.certificate,
            s.key,
            [intermediate.certificate],
            hash_for_name("sha256"),
            pad,
        )
        for s, pad in zip(signers, ("pss", "pkcs1v15"), strict=True)
    ]
    return root, signers, envelopes


@fuzz_settings()
@given(der_inputs(_pki()[2]))
def test_hostile_manifests_are_refused_or_unchanged(data):
    root, signers, _ = _pki()
    try:
        verified = verify_trusted(data, [root.certificate], NOW)
    except OtwardError:
        pass
    else:
        assert verified.manifest == MANIFEST
    for signer in signers:
        try:
            pinned = verify_pinned(data, key_pin(signer.key.public_key()))
        except OtwardError:
            continue
        assert pinned.manifest == MANIFEST


@fuzz_settings()
@given(st.one_of(st.binary(max_size=512), st.just(dump_manifest(MANIFEST)).map(lambda b: b[: len(b) // 2])))
def test_manifest_json_parser_raises_only_otward_errors(data):
    try:
        parse_manifest(data)
    except OtwardError:
        pass


@fuzz_settings()
@given(st.text(max_size=400))
def test_boot_chain_layout_and_counters_raise_only_config_errors(text):
    for parse in (parse_boot_chain, parse_counters):
        try:
            parse(text)
        except ConfigError:
            pass

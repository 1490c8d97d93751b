"""Signing and verifying firmware manifests: the round trip for every accepted algorithm and each way a
manifest or image is refused, with the check id the refusal becomes."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc4055, rfc5280, rfc5652

from otward.core.firmware.envelope import hash_for_name, open_signed_content, sign_content
from otward.core.firmware.manifest import Manifest, dump_manifest, key_pin
from otward.core.firmware.verify import ImageFacts, verify_firmware, verify_pinned, verify_trusted
from otward.errors import InvalidRequestError, OtwardError
from tests.unit.core.firmware.pki import NOW, Signer, make_ca, make_key, make_signer

IMAGE = bytes(range(256)) * 64


@pytest.fixture(scope="module")
def root() -> Signer:
    return make_ca("firmware root")


@pytest.fixture(scope="module")
def intermediate(root: Signer) -> Signer:
    return make_ca("firmware issuing", root)


def manifest_for(image: bytes = IMAGE, *, version: int = 5, algorithm: str = "sha-256", **fields) -> Manifest:
    digest = hashlib.new(algorithm.replace("-", ""), image).digest()
    values = {"stage": "bootloader", "signed_at": NOW, **fields}
    return Manifest(version=version, size=len(image), digest_algorithm=algorithm, digest=digest, **values)


def sign(signer: Signer, manifest: Manifest, chain=(), hash_name: str = "sha256", padding="pss") -> bytes:
    return sign_content(
        dump_manifest(manifest),
        signer.certificate,
        signer.key,
        list(chain),
        hash_for_name(hash_name),
        padding,
    )


def measure(image: bytes):
    return lambda name: ImageFacts(len(image), hashlib.new(name, image).digest())


def refusal(exc_info: pytest.ExceptionInfo[OtwardError]) -> str | None:
    return exc_info.value.rule


@pytest.mark.parametrize(
    ("kind", "hash_name", "padding", "described"),
    [
        ("rsa-2048", "sha256", "pss", "RSA-2048 PSS with SHA-256"),
        ("rsa-2048", "sha256", "pkcs1v15", "RSA-2048 PKCS#1 v1.5 with SHA-256"),
        ("rsa-3072", "sha384", "pss", "RSA-3072 PSS with SHA-384"),
        ("ec-p256", "sha256", "pss", "ECDSA P-256 with SHA-256"),
        ("ec-p384", "sha384", "pss", "ECDSA P-384 with SHA-384"),
    ],
    ids=["rsa2048-pss", "rsa2048-pkcs1", "rsa3072-pss", "p256", "p384"],
)
def test_round_trip_for_each_accepted_algorithm(root, intermediate, kind, hash_name, padding, described):
    signer = make_signer(intermediate, kind)
    algorithm = "sha-384" if hash_name == "sha384" else "sha-256"
    manifest = manifest_for(algorithm=algorithm, next_stage_key=key_pin(signer.key.public_key()))
    envelope = sign(signer, manifest, [intermediate.certificate], hash_name, padding)

    verified = verify_firmware(envelope, measure(IMAGE), [root.certificate], NOW, min_version=5)

    assert verified.manifest == manifest
    assert verified.algorithm == described
    assert [c.subject for c in verified.path] == [
        signer.certificate.subject,
        intermediate.certificate.subject,
        root.certificate.subject,
    ]
    assert verify_pinned(envelope, key_pin(signer.key.public_key())).manifest == manifest


def test_tampered_image_is_refused(root, intermediate):
    envelope = sign(make_signer(intermediate), manifest_for(), [intermediate.certificate])
    changed = bytearray(IMAGE)
    changed[1000] ^= 1
    with pytest.raises(OtwardError) as caught:
        verify_firmware(envelope, measure(bytes(changed)), [root.certificate], NOW)
    assert refusal(caught) == "firmware.image.mismatch"
    assert "digest" in str(caught.value)
    with pytest.raises(OtwardError) as caught:
        verify_firmware(envelope, measure(IMAGE + b"\0"), [root.certificate], NOW)
    assert refusal(caught) == "firmware.image.mismatch"
    assert "bytes" in str(caught.value)


def test_tampered_manifest_is_refused(root, intermediate):
    envelope = sign(make_signer(intermediate), manifest_for(version=5), [intermediate.certificate])
    position = envelope.index(b'"version":5')
    tampered = envelope[:position] + b'"version":9' + envelope[position + 11 :]
    with pytest.raises(OtwardError) as caught:
        verify_trusted(tampered, [root.certificate], NOW)
    assert refusal(caught) == "firmware.signature.invalid"


def test_a_changed_signature_is_refused(root, intermediate):
    envelope = bytearray(
        sign(make_signer(intermediate, "rsa-2048"), manifest_for(), [intermediate.certificate])
    )
    envelope[-5] ^= 0x40  # inside the RSA signature, the last field of the structure
    with pytest.raises(OtwardError) as caught:
        verify_trusted(bytes(envelope), [root.certificate], NOW)
    assert refusal(caught) == "firmware.signature.invalid"


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (b"", "firmware.manifest.unreadable"),
        (b'{"type": "otward-firmware-manifest"}', "firmware.signature.missing"),
        (b"-----BEGIN PKCS7-----\n", "firmware.manifest.unreadable"),
        (b"\x30\x03\x02\x01", "firmware.manifest.unreadable"),
    ],
    ids=["empty", "unsigned-json", "pem", "garbage"],
)
def test_unsigned_or_unreadable_manifests_are_refused(root, data, rule):
    with pytest.raises(OtwardError) as caught:
        verify_trusted(data, [root.certificate], NOW)
    assert refusal(caught) == rule


def test_truncated_manifest_is_refused(root, intermediate):
    envelope = sign(make_signer(intermediate), manifest_for(), [intermediate.certificate])
    for cut in (len(envelope) - 1, len(envelope) // 2, 10):
        with pytest.raises(OtwardError) as caught:
            verify_trusted(envelope[:cut], [root.certificate], NOW)
        assert refusal(caught) == "firmware.manifest.unreadable"


def test_signed_data_without_signature_is_unsigned(root, intermediate):
    signer = make_signer(intermediate)
    certificates_only = pkcs7.serialize_certificates([signer.certificate], serialization.Encoding.DER)
    with pytest.raises(OtwardError) as caught:
        verify_trusted(certificates_only, [root.certificate], NOW)
    assert refusal(caught) == "firmware.signature.missing"


def test_signer_from_another_root_is_untrusted(root, intermediate):
    stranger = make_ca("someone else's root")
    envelope = sign(make_signer(stranger, cn="firmware signer"), manifest_for())
    with pytest.raises(OtwardError) as caught:
        verify_trusted(envelope, [root.certificate], NOW)
    assert refusal(caught) == "firmware.chain.untrusted"
    self_signed = make_signer(intermediate)
    envelope = sign(self_signed, manifest_for())  # the intermediate is not carried: no path
    with pytest.raises(OtwardError) as caught:
        verify_trusted(envelope, [root.certificate], NOW)
    assert refusal(caught) == "firmware.chain.untrusted"


def test_signer_certificate_must_be_valid_when_signed(root, intermediate):
    old = make_signer(intermediate, not_before=NOW - timedelta(days=400), lifetime=timedelta(days=100))
    with pytest.raises(OtwardError) as caught:
        verify_trusted(sign(old, manifest_for()), [root.certificate, intermediate.certificate], NOW)
    assert refusal(caught) == "firmware.chain.untrusted"
    # signed while the certificate was valid: still verifies today, after it lapsed
    earlier = manifest_for(signed_at=NOW - timedelta(days=350))
    verified = verify_trusted(sign(old, earlier, [intermediate.certificate]), [root.certificate], NOW)
    assert verified.manifest.signed_at == NOW - timedelta(days=350)


def test_signing_time_in_the_future_is_refused(root, intermediate):
    future = manifest_for(signed_at=NOW + timedelta(hours=1))
    with pytest.raises(OtwardError) as caught:
        verify_trusted(
            sign(make_signer(intermediate), future, [intermediate.certificate]), [root.certificate], NOW
        )
    assert refusal(caught) == "firmware.chain.untrusted"
    assert "future" in str(caught.value)


@pytest.mark.parametrize(
    "eku",
    [(ExtendedKeyUsageOID.CLIENT_AUTH,), (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)],
    ids=["client-auth", "tls"],
)
def test_a_tls_certificate_cannot_sign_firmware(root, intermediate, eku):
    signer = make_signer(intermediate, eku=eku)
    with pytest.raises(OtwardError) as caught:
        verify_trusted(sign(signer, manifest_for(), [intermediate.certificate]), [root.certificate], NOW)
    assert refusal(caught) == "firmware.signer.usage"


def test_a_signer_without_eku_is_accepted(root, intermediate):
    signer = make_signer(intermediate, eku=None)
    assert verify_trusted(sign(signer, manifest_for(), [intermediate.certificate]), [root.certificate], NOW)


@pytest.mark.parametrize("kind", ["rsa-1024", "ed25519", "ec-p521"])
def test_weak_or_unlisted_keys_cannot_sign(intermediate, kind):
    signer = make_signer(intermediate, kind)
    with pytest.raises(OtwardError) as caught:
        sign(signer, manifest_for())
    assert refusal(caught) == "firmware.algorithm.weak"


def test_rsa_1024_signature_made_elsewhere_is_refused(root, intermediate):
    signer = make_signer(intermediate, "rsa-1024")
    envelope = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(dump_manifest(manifest_for()))
        .add_signer(signer.certificate, signer.key, hashes.SHA256())
        .add_certificate(intermediate.certificate)
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )
    with pytest.raises(OtwardError) as caught:
        verify_trusted(envelope, [root.certificate], NOW)
    assert refusal(caught) == "firmware.algorithm.weak"
    assert "1024" in str(caught.value)


def test_ed25519_signature_is_refused(root, intermediate):
    """A SignedData whose signer is an Ed25519 key (rebuilt with pyasn1: neither cryptography's builder
    nor OpenSSL 3.0 signs CMS with Ed25519), correctly signed, is still refused."""
    ed = make_signer(intermediate, "ed25519")
    envelope = sign(make_signer(intermediate), manifest_for())
    info, _ = decoder.decode(envelope, asn1Spec=rfc5652.ContentInfo())
    signed, _ = decoder.decode(bytes(info["content"]), asn1Spec=rfc5652.SignedData())
    certificate, _ = decoder.decode(
        ed.certificate.public_bytes(serialization.Encoding.DER), asn1Spec=rfc5280.Certificate()
    )
    signed["certificates"][0]["certificate"] = certificate
    signer_info = signed["signerInfos"][0]
    signer_info["sid"]["issuerAndSerialNumber"]["serialNumber"] = ed.certificate.serial_number
    signer_info["signatureAlgorithm"]["algorithm"] = univ.ObjectIdentifier("1.3.101.112")
    attributes = encoder.encode(signer_info["signedAttrs"])
    signer_info["signature"] = ed.key.sign(b"\x31" + attributes[1:])
    info["content"] = encoder.encode(signed)
    with pytest.raises(OtwardError, match="Ed25519") as caught:
        verify_trusted(encoder.encode(info), [root.certificate, intermediate.certificate], NOW)
    assert refusal(caught) == "firmware.algorithm.weak"


@pytest.mark.parametrize("name", ["sha1", "md5", "sha224", "sha3-256"])
def test_weak_hashes_are_refused_for_signing(name):
    with pytest.raises(OtwardError) as caught:
        hash_for_name(name)
    assert refusal(caught) == "firmware.algorithm.weak"


def test_downgrade_is_refused(root, intermediate):
    envelope = sign(make_signer(intermediate), manifest_for(version=4), [intermediate.certificate])
    with pytest.raises(OtwardError) as caught:
        verify_firmware(envelope, measure(IMAGE), [root.certificate], NOW, min_version=5)
    assert refusal(caught) == "firmware.version.rollback"
    assert verify_firmware(envelope, measure(IMAGE), [root.certificate], NOW, min_version=4)


def test_pinned_key_must_match(intermediate):
    signer = make_signer(intermediate)
    envelope = sign(signer, manifest_for())
    with pytest.raises(OtwardError) as caught:
        verify_pinned(envelope, key_pin(make_key("ec-p256").public_key()))
    assert refusal(caught) == "firmware.signer.unpinned"


def test_signing_key_must_match_the_certificate(intermediate):
    signer = make_signer(intermediate)
    other = make_signer(intermediate)
    with pytest.raises(InvalidRequestError, match="does not belong"):
        sign(Signer(other.key, signer.certificate), manifest_for())


def test_two_signatures_are_refused(root, intermediate):
    first, second = make_signer(intermediate), make_signer(intermediate)
    envelope = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(dump_manifest(manifest_for()))
        .add_signer(first.certificate, first.key, hashes.SHA256())
        .add_signer(second.certificate, second.key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )
    with pytest.raises(OtwardError) as caught:
        open_signed_content(envelope)
    assert refusal(caught) == "firmware.manifest.unreadable"


def test_detached_signature_is_refused(intermediate):
    signer = make_signer(intermediate)
    envelope = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(dump_manifest(manifest_for()))
        .add_signer(signer.certificate, signer.key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary, pkcs7.PKCS7Options.DetachedSignature])
    )
    with pytest.raises(OtwardError, match="detached") as caught:
        open_signed_content(envelope)
    assert refusal(caught) == "firmware.manifest.unreadable"


def test_signature_without_signed_attributes_is_refused(intermediate):
    signer = make_signer(intermediate)
    envelope = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(dump_manifest(manifest_for()))
        .add_signer(signer.certificate, signer.key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary, pkcs7.PKCS7Options.NoAttributes])
    )
    with pytest.raises(OtwardError, match="signed attributes") as caught:
        open_signed_content(envelope)
    assert refusal(caught) == "firmware.manifest.unreadable"


@pytest.mark.parametrize("salt", [-1, 2**70])
def test_pss_salt_length_out_of_range_is_refused(root, intermediate, salt):
    signer = make_signer(intermediate, "rsa-2048")
    envelope = sign(signer, manifest_for(), [intermediate.certificate])
    info, _ = decoder.decode(envelope, asn1Spec=rfc5652.ContentInfo())
    signed, _ = decoder.decode(bytes(info["content"]), asn1Spec=rfc5652.SignedData())
    algorithm = signed["signerInfos"][0]["signatureAlgorithm"]
    params, _ = decoder.decode(bytes(algorithm["parameters"]), asn1Spec=rfc4055.RSASSA_PSS_params())
    params["saltLength"] = salt
    algorithm["parameters"] = encoder.encode(params)
    info["content"] = encoder.encode(signed)
    with pytest.raises(OtwardError) as caught:
        verify_trusted(encoder.encode(info), [root.certificate], NOW)
    assert refusal(caught) == "firmware.manifest.unreadable"

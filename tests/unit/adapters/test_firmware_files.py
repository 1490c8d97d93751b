from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization

from otward.adapters.firmware_files import (
    load_certificates,
    load_pin,
    load_signing_key,
    measure_image,
    read_boot_chain,
    write_counters,
)
from otward.core.firmware.manifest import key_pin
from otward.errors import ConfigError, InvalidRequestError, ParseError
from tests.unit.core.firmware.pki import make_ca, make_signer


def test_measure_image_streams_the_digest(tmp_path):
    image = tmp_path / "image.bin"
    data = bytes(range(256)) * 20_000  # 5 MB: several read chunks
    image.write_bytes(data)
    for name in ("sha256", "sha384"):
        facts = measure_image(image, name)
        assert facts == type(facts)(len(data), hashlib.new(name, data).digest())
    with pytest.raises(ConfigError, match="cannot read image"):
        measure_image(tmp_path / "missing.bin", "sha256")


def test_pin_from_a_certificate_or_a_public_key_is_the_same(tmp_path):
    signer = make_signer(make_ca("root"), "rsa-2048")
    (tmp_path / "c.pem").write_bytes(signer.certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        signer.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    expected = key_pin(signer.key.public_key())
    assert load_pin(tmp_path / "c.pem", "key") == expected
    assert load_pin(tmp_path / "k.pem", "key") == expected
    (tmp_path / "bad.pem").write_text("not pem")
    with pytest.raises(ParseError, match="not a PEM public key"):
        load_pin(tmp_path / "bad.pem", "key")


def test_encrypted_signing_key_needs_its_passphrase(tmp_path):
    signer = make_signer(make_ca("root"))
    (tmp_path / "k.pem").write_bytes(
        signer.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"correct horse"),
        )
    )
    assert load_signing_key(tmp_path / "k.pem", b"correct horse").public_key() == signer.key.public_key()
    with pytest.raises(ParseError, match="--passphrase-file"):
        load_signing_key(tmp_path / "k.pem", None)
    with pytest.raises(ParseError):
        load_signing_key(tmp_path / "k.pem", b"wrong")


def test_certificates_file_must_hold_one(tmp_path):
    (tmp_path / "empty.pem").write_text("")
    with pytest.raises(ParseError, match="no PEM certificate"):
        load_certificates(tmp_path / "empty.pem", "trust root")
    (tmp_path / "big.pem").write_bytes(b"x" * (2 << 20))
    with pytest.raises(InvalidRequestError, match="larger than"):
        load_certificates(tmp_path / "big.pem", "trust root")


def test_boot_chain_directory_is_read_and_counters_written(tmp_path):
    pin = key_pin(make_signer(make_ca("root")).key.public_key())
    (tmp_path / "boot-chain.toml").write_text(
        f'rom_key_pin = "{pin}"\ncounters = "state/counters.json"\n'
        '[[stage]]\nname = "bootloader"\nimage = "bl.bin"\nmanifest = "bl.p7"\n'
    )
    files = read_boot_chain(tmp_path)
    assert files.rom_pin == pin
    assert files.counters == {}
    (tmp_path / "state").mkdir()
    write_counters(tmp_path, files.spec, {"bootloader": 3})
    assert read_boot_chain(tmp_path).counters == {"bootloader": 3}
    with pytest.raises(ConfigError, match="does not exist"):
        read_boot_chain(tmp_path / "nowhere")

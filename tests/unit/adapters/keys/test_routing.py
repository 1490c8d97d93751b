"""Key references are loaded by the backend their scheme names; new keys go to the configured one."""

from __future__ import annotations

import pytest

from otward.adapters.keys import FileKeyBackend, RoutingKeyBackend
from otward.core.keys import KeyType
from otward.errors import SignerError


class _Closing(FileKeyBackend):
    closed = False

    def close(self) -> None:
        self.closed = True


def test_new_keys_go_to_the_configured_backend_and_references_to_theirs(tmp_path):
    files = FileKeyBackend(tmp_path, b"a passphrase of 16+ bytes")
    router = RoutingKeyBackend("file", {"file": files})
    key_ref = router.create_key(KeyType.EC_P256, "ca-root")
    assert key_ref == "file:keys/ca-root.key.pem"
    assert router.load_key(key_ref).public_key() == files.load_key(key_ref).public_key()
    with pytest.raises(SignerError, match="needs the pkcs11 key backend, which is not configured"):
        router.load_key("pkcs11:object=otward-ca-root;id=00ff")
    router.destroy_key(key_ref)
    assert not (tmp_path / "keys" / "ca-root.key.pem").exists()


def test_an_attached_backend_replaces_and_closes_the_previous_one(tmp_path):
    first, second = (
        _Closing(tmp_path, b"a passphrase of 16+ bytes"),
        _Closing(tmp_path, b"a passphrase of 16+ bytes"),
    )
    router = RoutingKeyBackend("file", {"file": first})
    router.attach("file", second)
    assert first.closed
    assert router.default is second
    router.close()
    assert second.closed


def test_the_configured_backend_must_exist(tmp_path):
    with pytest.raises(ValueError, match="no key backend for scheme 'pkcs11'"):
        RoutingKeyBackend("pkcs11", {"file": FileKeyBackend(tmp_path, b"a passphrase of 16+ bytes")})

"""The agent's store: atomic replacement, file modes, the single commit point and its repair."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from otward.adapters.files import write_atomic
from otward.agent.state import (
    AgentState,
    AgentStore,
    KeyBackend,
    Pkcs11Settings,
    key_label,
)
from otward.errors import ConfigError, ConflictError, NotFoundError
from tests.conftest import self_signed

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def certificate(cn: str) -> x509.Certificate:
    return self_signed(
        ec.generate_private_key(ec.SECP256R1()), cn, valid_from=NOW, valid_for=timedelta(days=90)
    )


def make_state(**changes: object) -> AgentState:
    state = AgentState(
        server_url="https://127.0.0.1:8443",
        device_id="plc-7",
        server_pin="sha256/" + "A" * 43 + "=",
        backend=KeyBackend.FILE,
        key_label=key_label("plc-7", 1),
        key_counter=1,
        certificate=certificate("plc-7"),
        chain=(certificate("issuing"),),
    )
    return replace(state, **changes)  # type: ignore[arg-type]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_write_atomic_replaces_with_a_private_file(tmp_path):
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    target.chmod(0o644)
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert mode(target) == 0o600
    assert leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_atomic(target, "text is not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_prepare_creates_a_private_directory(tmp_path):
    store = AgentStore(tmp_path / "deep" / "agent")
    store.prepare()
    assert mode(store.directory) == 0o700


def test_prepare_refuses_a_directory_others_can_enter(tmp_path):
    directory = tmp_path / "agent"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)  # noqa: S103 - the permissive mode is what is tested
    with pytest.raises(ConfigError) as info:
        AgentStore(directory).prepare()
    assert info.value.rule == "store-mode"


def test_prepare_refuses_an_enrolled_store(tmp_path):
    store = AgentStore(tmp_path / "agent")
    store.prepare()
    store.save(make_state())
    with pytest.raises(ConflictError):
        store.prepare()


def test_state_round_trips_and_every_file_is_0600(tmp_path):
    store = AgentStore(tmp_path / "agent")
    store.prepare()
    state = make_state(
        backend=KeyBackend.PKCS11,
        pkcs11=Pkcs11Settings(Path("/usr/lib/softhsm/libsofthsm2.so"), "device", Path("/etc/otward/pin")),
    )
    store.save_ca([certificate("root")])
    store.save(state)
    assert store.load() == state
    for path in (store.state_path, store.cert_path, store.chain_path, store.ca_path):
        assert mode(path) == 0o600, path
    assert store.cert_path.read_bytes() == state.certificate.public_bytes(Encoding.PEM)
    assert store.chain_path.read_bytes() == b"".join(
        c.public_bytes(Encoding.PEM) for c in (state.certificate, *state.chain)
    )
    saved = json.loads(store.state_path.read_text())
    assert saved["key"]["pkcs11"] == {
        "module": "/usr/lib/softhsm/libsofthsm2.so",
        "token_label": "device",
        "pin_file": "/etc/otward/pin",
    }
    assert len(store.load_ca()) == 1


def test_commit_is_one_switch_and_exports_are_repaired(tmp_path):
    """A crash after the commit but before cert.pem was rewritten leaves the old copies; opening
    the store again brings them in line with the committed state."""
    store = AgentStore(tmp_path / "agent")
    store.prepare()
    old = make_state()
    store.save(old)
    new = replace(old, key_label=key_label("plc-7", 2), key_counter=2, certificate=certificate("plc-7"))
    store.commit(new)
    assert store.load().key_label == new.key_label
    assert store.cert_path.read_bytes() == old.certificate.public_bytes(Encoding.PEM)
    store.sync_exports(store.load())
    assert store.cert_path.read_bytes() == new.certificate.public_bytes(Encoding.PEM)
    assert store.chain_path.read_bytes().startswith(new.certificate.public_bytes(Encoding.PEM))


def test_missing_and_damaged_state(tmp_path):
    store = AgentStore(tmp_path / "agent")
    with pytest.raises(NotFoundError, match="no enrolled agent"):
        store.load()
    with pytest.raises(NotFoundError, match="enroll first"):
        store.ca_pem()
    store.prepare()
    store.state_path.write_text('{"version": 1, "server_url": "https://x"}')
    with pytest.raises(ConfigError, match="damaged"):
        store.load()
    store.state_path.write_text("{not json")
    with pytest.raises(ConfigError, match="damaged"):
        store.load()


def test_pkcs11_settings_go_with_the_pkcs11_backend_only():
    with pytest.raises(ConfigError):
        make_state(backend=KeyBackend.PKCS11)
    with pytest.raises(ConfigError):
        make_state(pkcs11=Pkcs11Settings(Path("/m.so"), "t", Path("/pin")))


def test_key_labels_count_up():
    state = make_state()
    assert state.next_key_label() == "otward-plc-7-2"


def test_the_store_lock_is_exclusive(tmp_path):
    import fcntl

    store = AgentStore(tmp_path / "agent")
    store.prepare()
    with store.lock():
        fd = os.open(store.directory / "lock", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    fd = os.open(store.directory / "lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again once the block is left
    finally:
        os.close(fd)
    assert mode(store.directory / "lock") == 0o600


def test_the_proxy_is_kept_and_a_state_written_before_proxies_still_loads(tmp_path):
    store = AgentStore(tmp_path / "agent")
    store.prepare()
    proxied = make_state(proxy="http://gw:s3cret@proxy.plant:3128")
    store.save(proxied)
    assert store.load() == proxied
    saved = json.loads(store.state_path.read_text())
    del saved["proxy"]  # as written by an agent before proxies were supported
    write_atomic(store.state_path, json.dumps(saved).encode())
    assert store.load() == replace(proxied, proxy=None)

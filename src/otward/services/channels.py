"""Secure channels with third-party software: a Mosquitto listener and an OPC UA trust list.

Both are files that other software reads. Every file is replaced atomically (temporary file in
the same directory, fsync, rename), so a broker or server reloading at any moment sees the old or
the new content, never a torn file. Private keys are created locally with mode 0600 and never
leave the machine; certificates, CRLs and the ACL are 0644 so that a broker dropping to its own
user can read them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import pwd
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from otward.adapters.files import write_atomic
from otward.core.identity import client_name
from otward.core.mosquitto import (
    ListenerConfig,
    MqttDevice,
    device_identity,
    plan_acl,
    render_acl,
    render_listener_config,
)
from otward.core.ports import CertificateStore
from otward.core.profiles import Identity
from otward.core.records import CertificateFilter
from otward.core.trustlist import (
    TRUST_LIST_DIRECTORIES,
    TrustListEntry,
    issuer_names,
    plan_trust_list,
)
from otward.errors import BackendError, ConfigError, InvalidRequestError, NotFoundError, PolicyViolationError
from otward.services.audit import SYSTEM_ACTOR, Actor
from otward.services.authorities import AuthorityService
from otward.services.enrollment import Owners
from otward.services.issuance import DEFAULT_CA, IssuanceService
from otward.services.revocation import RevocationService

if TYPE_CHECKING:
    from otward.services.pki import Pki

__all__ = [
    "MOSQUITTO_FILES",
    "Channels",
    "MosquittoResult",
    "TrustListResult",
    "reload_mosquitto",
]

MOSQUITTO_FILES = {
    "config": "mosquitto.conf",
    "cafile": "ca.pem",
    "certfile": "broker.pem",
    "keyfile": "broker.key",
    "crlfile": "crl.pem",
    "acl_file": "acl",
    "server_root": "server-root.pem",
    "state": "otward-mqtt.json",
}
TRUST_LIST_MANIFEST = ".otward-trustlist.json"
BROKER_RENEW_BEFORE = timedelta(days=30)
_PAGE = 1000
_WILDCARD_HOSTS = {"0.0.0.0", "::", ""}  # noqa: S104 - names the addresses we refuse to put in a SAN


def _write_public(path: Path, data: bytes, *, owner: tuple[int, int] | None = None) -> None:
    """Files brokers and OPC UA stacks read (certificates, CRLs, configuration, ACL): mode 0644."""
    write_atomic(path, data, mode=0o644, owner=owner)


def reload_mosquitto(pid: int) -> None:
    """SIGHUP to Mosquitto: it re-reads its configuration, the ACL file, its TLS certificate and the
    CRL file (Mosquitto 2.0). Connections already open are not re-checked."""
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise NotFoundError(
            f"no process {pid} to reload (is Mosquitto running?)", rule="mqtt-reload"
        ) from None
    except PermissionError:
        raise BackendError(f"not allowed to signal process {pid}", rule="mqtt-reload") from None


@dataclass(frozen=True)
class MosquittoResult:
    """What ``mqtt-config`` wrote: the files, the CAs trusted for devices and the ACL's devices."""

    directory: Path
    files: dict[str, Path]
    device_cas: tuple[str, ...]
    withdrawn_cas: tuple[str, ...]
    devices: tuple[MqttDevice, ...]
    conflicts: tuple[str, ...]
    broker_serial: str | None
    broker_reissued: bool


@dataclass(frozen=True)
class TrustListResult:
    """What ``opcua trustlist`` wrote: trusted CAs, chain-only issuers, and the files."""

    directory: Path
    trusted: tuple[str, ...]
    issuers: tuple[str, ...]
    skipped: tuple[str, ...]
    files: tuple[Path, ...] = field(default=())


@dataclass(frozen=True)
class _MosquittoState:
    device_cas: tuple[str, ...]
    port: int
    host: str
    server_names: tuple[str, ...]
    server_ca: str
    file_owner: str | None = None

    @property
    def owner_ids(self) -> tuple[int, int] | None:
        """(uid, gid) of ``file_owner``: the broker drops root before reading its files."""
        if self.file_owner is None:
            return None
        try:
            entry = pwd.getpwnam(self.file_owner)
        except KeyError:
            raise InvalidRequestError(
                f"user '{self.file_owner}' does not exist on this host", rule="mqtt-file-owner"
            ) from None
        return entry.pw_uid, entry.pw_gid

    def to_json(self) -> bytes:
        return (
            json.dumps(
                {
                    "device_cas": list(self.device_cas),
                    "port": self.port,
                    "host": self.host,
                    "server_names": list(self.server_names),
                    "server_ca": self.server_ca,
                    "file_owner": self.file_owner,
                },
                indent=2,
            )
            + "\n"
        ).encode()

    @classmethod
    def load(cls, path: Path) -> _MosquittoState:
        try:
            raw: dict[str, Any] = json.loads(path.read_bytes())
            return cls(
                device_cas=tuple(str(c) for c in raw["device_cas"]),
                port=int(raw["port"]),
                host=str(raw["host"]),
                server_names=tuple(str(n) for n in raw["server_names"]),
                server_ca=str(raw["server_ca"]),
                file_owner=None if raw.get("file_owner") is None else str(raw["file_owner"]),
            )
        except FileNotFoundError:
            raise ConfigError(
                f"{path.parent} holds no otward Mosquitto configuration; run otward mqtt-config --out first",
                rule="mqtt-state",
            ) from None
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"{path} is unreadable; run otward mqtt-config --out again", rule="mqtt-state"
            ) from None


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class Channels:
    """Files for Mosquitto and OPC UA stacks, from the installation's CAs, CRLs and certificates."""

    def __init__(
        self,
        certificates: CertificateStore,
        authorities: AuthorityService,
        issuance: IssuanceService,
        revocation: RevocationService,
        owners: Owners,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self._certificates = certificates
        self._authorities = authorities
        self._issuance = issuance
        self._revocation = revocation
        self._owners = owners
        self._clock = clock

    @classmethod
    def for_pki(cls, pki: Pki) -> Channels:
        return cls(
            pki.stores.certificates,
            pki.authorities,
            pki.issuance,
            pki.revocation,
            pki.owners,
            clock=pki.clock,
        )

    # --- CAs ---------------------------------------------------------------------------------

    def _chain_names(self, name: str) -> list[str]:
        """``name`` and its parents up to the root."""
        names: list[str] = []
        current: str | None = name
        while current is not None:
            record = self._authorities.record(current)
            names.append(current)
            current = record.parent
        return names

    def _is_withdrawn(self, name: str) -> bool:
        """True when the certificate of ``name`` or of one of its parents is revoked."""
        for certificate in self._authorities.certificate_chain(name):
            record = self._certificates.get_certificate(certificate.serial_number)
            if record is not None and record.revoked_at is not None:
                return True
        return False

    def _certificate(self, name: str) -> x509.Certificate:
        return self._authorities.certificate_chain(name)[0]

    # --- MQTT ----------------------------------------------------------------------------------

    def default_device_cas(self) -> list[str]:
        """The CAs that issue devices: every owner's CA, or ``issuing`` when there is no owner."""
        return sorted({owner.ca for owner in self._owners.list()}) or [DEFAULT_CA]

    def write_mosquitto(
        self,
        out: Path,
        *,
        port: int = 8883,
        host: str = "127.0.0.1",
        device_cas: Sequence[str] = (),
        server_names: Sequence[str] = (),
        server_ca: str = DEFAULT_CA,
        renew: bool = False,
        file_owner: str | None = None,
        actor: Actor = SYSTEM_ACTOR,
    ) -> MosquittoResult:
        """Write the listener, broker certificate and key, CA file, CRL file and ACL into ``out``.

        ``file_owner`` (a user name, e.g. ``mosquitto``) owns the files, the key included: Mosquitto
        2.0 drops root right after reading its configuration, before it loads key and certificates.
        """
        names = tuple(server_names) or (host,)
        if any(n in _WILDCARD_HOSTS for n in names):
            raise InvalidRequestError(
                f"host '{host}' listens on every address; name the broker with --server-name",
                rule="mqtt-server-name",
            )
        cas = tuple(dict.fromkeys(device_cas)) or tuple(self.default_device_cas())
        for name in (*cas, server_ca):
            self._chain_names(name)  # every CA must exist before anything is written
        state = _MosquittoState(cas, port, host, names, server_ca, file_owner)
        owner = state.owner_ids
        files = self._mosquitto_paths(out)
        # Validate the rendered listener before touching the directory.
        listener = self._listener(state, files)
        out.mkdir(parents=True, exist_ok=True)
        serial, reissued = self._broker_certificate(files, state, renew=renew, actor=actor)
        server_root = self._authorities.certificate_chain(server_ca)[-1]
        _write_public(files["server_root"], server_root.public_bytes(serialization.Encoding.PEM), owner=owner)
        result = self._write_trust_files(out, files, state)
        config = render_listener_config(listener, generated_at=self._clock()).encode()
        _write_public(files["config"], config, owner=owner)
        _write_public(files["state"], state.to_json(), owner=owner)
        return dataclasses.replace(result, broker_serial=serial, broker_reissued=reissued)

    def refresh_mosquitto(self, out: Path) -> MosquittoResult:
        """Rewrite the CRL file, the CA file and the ACL from the current state of the installation."""
        files = self._mosquitto_paths(out)
        state = _MosquittoState.load(files["state"])
        return self._write_trust_files(out, files, state)

    def refresh_mosquitto_if_changed(self, out: Path) -> bool:
        """:meth:`refresh_mosquitto`, and whether the broker must reload (a CRL, the CA file or the
        ACL changed): what the service runs every ``mqtt.refresh_seconds``."""
        files = self._mosquitto_paths(out)
        watched = ("crlfile", "cafile", "acl_file")

        def contents() -> list[bytes | None]:
            return [files[key].read_bytes() if files[key].exists() else None for key in watched]

        before = contents()
        self.refresh_mosquitto(out)
        return contents() != before

    @staticmethod
    def _mosquitto_paths(out: Path) -> dict[str, Path]:
        directory = out.resolve()
        return {key: directory / name for key, name in MOSQUITTO_FILES.items()}

    @staticmethod
    def _listener(state: _MosquittoState, files: dict[str, Path]) -> ListenerConfig:
        return ListenerConfig(
            port=state.port,
            host=state.host,
            cafile=str(files["cafile"]),
            certfile=str(files["certfile"]),
            keyfile=str(files["keyfile"]),
            crlfile=str(files["crlfile"]),
            acl_file=str(files["acl_file"]),
        )

    def _write_trust_files(
        self, out: Path, files: dict[str, Path], state: _MosquittoState
    ) -> MosquittoResult:
        owner = state.owner_ids
        # Every unexpired generation of a device CA (after a rollover the old one's devices still
        # connect until they renew), minus those revoked: they drop out at this refresh.
        generations = {ca: self._authorities.generations(ca) for ca in state.device_cas}
        issuing = {ca: [g for g in names if not self._is_withdrawn(g)] for ca, names in generations.items()}
        withdrawn = tuple(ca for ca in state.device_cas if not issuing[ca])
        active = [ca for ca in state.device_cas if ca not in withdrawn]
        in_use = list(dict.fromkeys(g for ca in active for g in issuing[ca]))
        devices, client_names = self._clients(in_use)
        plan = plan_acl(devices, client_names)
        # The ACL first: a device of a withdrawn CA loses its topics even before the CA file changes.
        _write_public(files["acl_file"], render_acl(plan, generated_at=self._clock()).encode(), owner=owner)
        if not active:
            raise PolicyViolationError(
                f"every device CA is revoked ({', '.join(withdrawn)}); the ACL now grants nothing "
                "but the CA and CRL files were left as they were",
                rule="mqtt-no-ca",
            )
        chain_cas = list(dict.fromkeys(n for ca in in_use for n in self._chain_names(ca)))
        # certificate_chain includes the roots outside otward, which are needed to verify as well
        bundle = {
            c.public_bytes(serialization.Encoding.PEM): None
            for n in in_use
            for c in self._authorities.certificate_chain(n)
        }
        ca_pem = b"".join(bundle)
        # Mosquitto sets X509_V_FLAG_CRL_CHECK (leaf only): the CRL of the device's issuing CA must be
        # there or the handshake fails; the parents' CRLs are included for completeness.
        crl_pem = b"".join(
            x509.load_der_x509_crl(self._revocation.current_crl(n).der).public_bytes(
                serialization.Encoding.PEM
            )
            for n in chain_cas
        )
        _write_public(files["crlfile"], crl_pem, owner=owner)
        _write_public(files["cafile"], ca_pem, owner=owner)
        return MosquittoResult(
            directory=out.resolve(),
            files=files,
            device_cas=tuple(active),
            withdrawn_cas=withdrawn,
            devices=plan.devices,
            conflicts=plan.conflicts,
            broker_serial=None,
            broker_reissued=False,
        )

    def _device_profiles(self) -> list[str]:
        return sorted(p.name for p in self._issuance.profiles.values() if p.identity is Identity.DEVICE)

    def _clients(self, cas: Sequence[str]) -> tuple[list[MqttDevice], list[str]]:
        """What the broker may see connect with a certificate of ``cas`` that is unrevoked and
        unexpired: the devices (device profile, device URI) and the CNs of every other client."""
        now = self._clock()
        devices: list[MqttDevice] = []
        others: list[str] = []
        device_profiles = set(self._device_profiles())
        for ca in cas:
            query = CertificateFilter(ca=ca, revoked=False, expires_after=now)
            offset = 0
            while True:
                page, total = self._certificates.list_certificates(query, limit=_PAGE, offset=offset)
                for record in page:
                    certificate = x509.load_der_x509_certificate(record.der)
                    device = device_identity(certificate) if record.profile in device_profiles else None
                    if device is not None:
                        devices.append(device)
                    elif (name := client_name(certificate)) is not None:
                        others.append(name.name)
                offset += len(page)
                if not page or offset >= total:
                    break
        return devices, others

    def _broker_certificate(
        self, files: dict[str, Path], state: _MosquittoState, *, renew: bool, actor: Actor
    ) -> tuple[str, bool]:
        """Keep the broker's certificate while it is good for 30 more days and names the same
        host; otherwise make a new key here and have ``server_ca`` issue a ``tls-server`` one."""
        if not renew:
            current = self._current_broker_certificate(files, state)
            if current is not None:
                return f"{current.serial_number:x}", False
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, state.server_names[0])]))
            .add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in state.server_names]), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        issued = self._issuance.issue(
            csr.public_bytes(serialization.Encoding.PEM),
            profile="tls-server",
            ca=state.server_ca,
            actor=actor,
        )
        # Mosquitto sends what certfile holds: the leaf and the CAs below the root.
        chain_pem = issued.pem.encode() + b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in issued.chain[:-1]
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # Key before certificate: a crash in between leaves a key that the old certificate does not
        # match, which the next run detects and repairs by issuing again.
        owner = state.owner_ids
        write_atomic(files["keyfile"], key_pem, owner=owner)
        _write_public(files["certfile"], chain_pem, owner=owner)
        return issued.serial, True

    def _current_broker_certificate(
        self, files: dict[str, Path], state: _MosquittoState
    ) -> x509.Certificate | None:
        try:
            certificate = x509.load_pem_x509_certificates(files["certfile"].read_bytes())[0]
            key = serialization.load_pem_private_key(files["keyfile"].read_bytes(), password=None)
        except (OSError, ValueError, TypeError):
            return None
        record = self._certificates.get_certificate(certificate.serial_number)
        if (
            record is None
            or record.revoked_at is not None
            or record.ca not in self._authorities.generations(state.server_ca)
        ):
            return None
        if certificate.public_key() != key.public_key():
            return None
        if certificate.not_valid_after_utc - self._clock() < BROKER_RENEW_BEFORE:
            return None
        try:
            san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return None
        if set(san) != {_general_name(n) for n in state.server_names}:
            return None
        return certificate

    # --- OPC UA --------------------------------------------------------------------------------

    def export_opcua_trust_list(self, out: Path, cas: Sequence[str] = ()) -> TrustListResult:
        """Write (or refresh) an OPC UA trust list under ``out``.

        ``cas`` are the CAs whose application certificates are trusted (default: every CA that
        is not a root). Their parents go to ``issuers``. A named CA that is revoked is refused; by
        default such CAs are skipped and reported. Files this command wrote before and that are no
        longer part of the list are removed; files put there by others are left alone.
        """
        explicit = bool(cas)
        now = self._clock()
        selected = list(dict.fromkeys(cas)) or [
            a.name
            for a in self._authorities.list()
            if not a.is_root and x509.load_der_x509_certificate(a.certificate_der).not_valid_after_utc > now
        ]
        chains = {name: self._chain_names(name) for name in selected}
        skipped: list[str] = []
        for name in selected:
            if self._is_withdrawn(name):
                if explicit:
                    raise PolicyViolationError(
                        f"CA '{name}' (or a CA above it) is revoked and cannot be trusted",
                        rule="trustlist-revoked-ca",
                    )
                skipped.append(name)
        trusted = [n for n in selected if n not in skipped]
        issuers = issuer_names(chains, trusted)
        entries = {
            name: TrustListEntry(name, self._certificate(name), self._revocation.current_crl(name).der)
            for name in (*trusted, *issuers)
        }
        plan = plan_trust_list([entries[n] for n in trusted], [entries[n] for n in issuers])
        root = out.resolve()
        for directory in TRUST_LIST_DIRECTORIES:
            (root / directory).mkdir(parents=True, exist_ok=True)
        # OPC 10000-12 Table F.1 (and UA-.NET) spell the issuer store "issuer"; node-opcua and
        # many tools use "issuers". One directory, both names.
        alias = root / "issuer"
        if not alias.exists() and not alias.is_symlink():
            alias.symlink_to("issuers", target_is_directory=True)
        manifest = root / TRUST_LIST_MANIFEST
        previous = self._read_manifest(manifest)
        written = []
        for item in plan:
            path = root / item.path
            _write_public(path, item.content)
            written.append(path)
        current = {item.path for item in plan}
        for stale in sorted(previous - current):
            with contextlib.suppress(FileNotFoundError):
                (root / stale).unlink()
        _write_public(manifest, (json.dumps({"files": sorted(current)}, indent=2) + "\n").encode())
        return TrustListResult(root, tuple(trusted), tuple(issuers), tuple(skipped), tuple(written))

    @staticmethod
    def _read_manifest(path: Path) -> set[str]:
        try:
            raw = json.loads(path.read_bytes())
        except FileNotFoundError:
            return set()
        except ValueError:
            raise ConfigError(
                f"{path} is unreadable; remove it and export again", rule="trustlist-manifest"
            ) from None
        names = raw.get("files", []) if isinstance(raw, dict) else []
        # Only ever delete inside the four trust list directories.
        return {
            str(n)
            for n in names
            if isinstance(n, str)
            and n.rsplit("/", 1)[0] in TRUST_LIST_DIRECTORIES
            and ".." not in n.split("/")
        }

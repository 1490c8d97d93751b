"""``otward init``: a complete, ready-to-serve data directory in one step."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from otward.adapters.keys import generate_private_key, write_private_file
from otward.adapters.keys.pkcs11 import Pkcs11KeyBackend, resolve_pin, validate_key_type
from otward.config import (
    CONFIG_FILE,
    DB_PASSWORD_FILE,
    DEFAULT_SERVICE_NAMES,
    PASSPHRASE_FILE,
    KeySettings,
    Settings,
    default_database_url,
    load_settings,
    parse_service_names,
    read_passphrase,
    render_config,
    split_database_password,
)
from otward.core.ca_lifecycle import is_self_signed
from otward.core.keys import KeyType, classify_public_key, signature_hash_for
from otward.errors import ConfigError, ConflictError, OtwardError
from otward.services.audit import SYSTEM_ACTOR, Actor
from otward.services.pki import Pki

__all__ = [
    "InitResult",
    "TlsFiles",
    "check_first_run_options",
    "check_target",
    "complete_external_init",
    "initialize",
    "renew_service_certificate_if_due",
    "service_names",
]

ROOT_CA = "root"
ISSUING_CA = "issuing"
ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name, not a secret
ISSUING_CSR_FILE = "issuing.csr"  # init --external-root: the issuing CA's request for the root's operator


@dataclass(frozen=True)
class TlsFiles:
    """The service's own TLS identity inside the data directory."""

    certificate_chain: Path  # leaf then issuing CA
    private_key: Path  # PKCS#8, encrypted with the CA passphrase
    root_certificate: Path  # what clients pin

    @classmethod
    def in_dir(cls, data_dir: Path) -> TlsFiles:
        return cls(data_dir / "tls" / "server.pem", data_dir / "tls" / "server.key", data_dir / "root.pem")


@dataclass(frozen=True)
class InitResult:
    """What ``initialize`` created, for the console: nothing of it is chosen silently."""

    settings: Settings
    tls: TlsFiles
    admin_token_file: Path
    passphrase_file: Path | None
    root_fingerprint: str
    key_type: KeyType
    root: x509.Certificate
    issuing: x509.Certificate | None  # None until the external root's operator signs its request
    service_names: tuple[str, ...]
    issuing_csr: Path | None = None  # init --external-root: the request to have signed


def service_names(given: tuple[str, ...] | list[str] = ()) -> tuple[str, ...]:
    """The names a new installation's TLS certificate covers: those given (``--name``), then
    localhost and 127.0.0.1, so that the host itself reaches the service too; checked."""
    try:
        return parse_service_names((*given, *DEFAULT_SERVICE_NAMES))
    except ValueError as exc:
        raise ConfigError(f"--name: {exc}", rule="service-name") from None


def check_target(data_dir: Path) -> None:
    """Refuse a data directory that is a file or holds anything: init never overwrites an installation."""
    if data_dir.exists():
        if not data_dir.is_dir():
            raise ConfigError(f"{data_dir} exists and is not a directory")
        if any(data_dir.iterdir()):
            raise ConfigError(
                f"{data_dir} already exists and is not empty; otward init never overwrites an installation "
                "(choose another --data directory)"
            )


def initialize(
    data_dir: Path,
    *,
    key_type: KeyType = KeyType.EC_P256,
    organization: str = "otward",
    public_url: str = "http://127.0.0.1:8080",
    database_url: str | None = None,
    server_names: tuple[str, ...] = DEFAULT_SERVICE_NAMES,
    actor: Actor = SYSTEM_ACTOR,
    keys: KeySettings | None = None,
    external_root: x509.Certificate | None = None,
    csr_out: Path | None = None,
) -> InitResult:
    """Create ``data_dir`` with database, root and issuing CA, responders, service TLS (for
    ``server_names``, kept as ``[server] names`` in config.toml) and admin token. With ``keys`` of
    the pkcs11 backend, the token is opened before anything is written, and every CA, responder and
    signer key is generated in it (``[keys]`` in config.toml).

    With ``external_root`` (a root otward does not hold, e.g. offline): no root is made; the issuing
    CA gets its key and a PKCS#10 request (``csr_out``, default DATA/issuing.csr) and waits for its
    certificate (``otward ca import-cert issuing``, which then makes the service's TLS identity);
    DATA/root.pem holds the external root, the trust anchor of everything including the audit trail."""
    if external_root is not None:
        _check_external_root(external_root)
    try:
        names = parse_service_names(server_names)
    except ValueError as exc:
        raise ConfigError(f"server names: {exc}", rule="service-name") from None
    check_target(data_dir)
    if keys is not None and keys.backend == "pkcs11":
        validate_key_type(key_type)
        _check_token(keys)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    passphrase_file: Path | None = None
    if not os.environ.get("OTWARD_CA_PASSPHRASE") and not os.environ.get("OTWARD_CA_PASSPHRASE_FILE"):
        passphrase_file = data_dir / PASSPHRASE_FILE
        write_private_file(passphrase_file, secrets.token_urlsafe(32).encode() + b"\n")
    stored_url, password = split_database_password(database_url) if database_url else (None, None)
    if password is not None:
        write_private_file(data_dir / DB_PASSWORD_FILE, password.encode() + b"\n")
    (data_dir / CONFIG_FILE).write_text(
        render_config(
            organization=organization, public_url=public_url, database_url=stored_url, names=names, keys=keys
        ),
        encoding="utf-8",
    )
    settings = load_settings(data_dir, database_url=database_url)
    if settings.database_url == default_database_url(data_dir):
        # SQLite creates its -wal and -shm files with the database file's mode.
        write_private_file(data_dir / "otward.db", b"")
    pki = Pki.open(settings, migrate=True)
    if external_root is not None:
        try:
            return _initialize_under_external_root(
                pki, settings, external_root, key_type, organization, csr_out, actor, passphrase_file, names
            )
        finally:
            pki.close()
    try:
        root = pki.authorities.create_root(ROOT_CA, key_type=key_type, organization=organization, actor=actor)
        issuing = pki.authorities.create_subordinate(
            ISSUING_CA,
            parent=ROOT_CA,
            key_type=key_type,
            organization=organization,
            path_length=0,
            actor=actor,
        )
        for name in (ROOT_CA, ISSUING_CA):
            pki.revocation.publish_crl(name, actor)
        tls = TlsFiles.in_dir(data_dir)
        tls.certificate_chain.parent.mkdir(mode=0o700, exist_ok=True)
        _write_service_identity(pki, tls, actor, replace=False)
        _, token = pki.tokens.create("admin", actor)
        admin_token_file = data_dir / ADMIN_TOKEN_FILE
        write_private_file(admin_token_file, token.encode() + b"\n")
    finally:
        pki.close()
    fingerprint = root.certificate.fingerprint(hashes.SHA256()).hex(":")
    return InitResult(
        settings,
        tls,
        admin_token_file,
        passphrase_file,
        fingerprint,
        key_type=key_type,
        root=root.certificate,
        issuing=issuing.certificate,
        service_names=names,
    )


def _check_external_root(root: x509.Certificate) -> None:
    """The external root must be a self-signed CA certificate: refused before anything is written."""
    try:
        constraints = root.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca or not is_self_signed(root):
        raise ConfigError(
            "--external-root must be a self-signed CA certificate (basicConstraints cA=TRUE)",
            rule="external-root",
        )


def _initialize_under_external_root(
    pki: Pki,
    settings: Settings,
    root: x509.Certificate,
    key_type: KeyType,
    organization: str,
    csr_out: Path | None,
    actor: Actor,
    passphrase_file: Path | None,
    names: tuple[str, ...],
) -> InitResult:
    data_dir = settings.data_dir
    csr = pki.authorities.create_pending(
        ISSUING_CA, key_type=key_type, organization=organization, path_length=0, actor=actor
    )
    csr_path = csr_out or data_dir / ISSUING_CSR_FILE
    csr_path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    tls = TlsFiles.in_dir(data_dir)
    tls.certificate_chain.parent.mkdir(mode=0o700, exist_ok=True)
    tls.root_certificate.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    _, token = pki.tokens.create("admin", actor)
    admin_token_file = data_dir / ADMIN_TOKEN_FILE
    write_private_file(admin_token_file, token.encode() + b"\n")
    return InitResult(
        settings,
        tls,
        admin_token_file,
        passphrase_file,
        root.fingerprint(hashes.SHA256()).hex(":"),
        key_type=key_type,
        root=root,
        issuing=None,
        service_names=names,
        issuing_csr=csr_path,
    )


def complete_external_init(pki: Pki, data_dir: Path, actor: Actor = SYSTEM_ACTOR) -> bool:
    """After ``ca import-cert issuing`` in an installation made with ``init --external-root``: the
    service's TLS identity from the now active issuing CA, if it has none yet."""
    tls = TlsFiles.in_dir(data_dir)
    if tls.certificate_chain.exists() or not (data_dir / CONFIG_FILE).exists():
        return False
    tls.certificate_chain.parent.mkdir(mode=0o700, exist_ok=True)
    _write_service_identity(pki, tls, actor, replace=False)
    return True


def _check_token(keys: KeySettings) -> None:
    """Log in to the token before a data directory exists: a wrong PIN leaves nothing behind."""
    if keys.pkcs11_module is None or keys.pkcs11_token is None:
        raise ConfigError("--pkcs11-module and --pkcs11-token are required with --key-backend pkcs11")
    pin_file = keys.pkcs11_pin_file
    backend = Pkcs11KeyBackend(keys.pkcs11_module, keys.pkcs11_token, lambda: resolve_pin(pin_file))
    try:
        backend.open()
    finally:
        backend.close()


def check_first_run_options(
    settings: Settings,
    *,
    key_type: KeyType | None = None,
    organization: str | None = None,
    names: tuple[str, ...] | None = None,
) -> None:
    """``otward serve --org/--key-type/--name`` on a data directory that exists: accepted when they
    say what it already has (a service unit may always pass them), refused otherwise; they never
    change an installation."""
    where = settings.data_dir
    if organization is not None and organization != settings.organization:
        raise ConfigError(
            f"--org {organization!r}: {where} was created for {settings.organization!r}; --org applies "
            "only when serve creates a data directory",
            rule="first-run-option",
        )
    if names is not None and names != settings.server.names:
        raise ConfigError(
            f"--name: {where} serves {', '.join(settings.server.names)}, not {', '.join(names)}; "
            f"change [server] names in {where / CONFIG_FILE} (the next start reissues the certificate)",
            rule="first-run-option",
        )
    if key_type is not None:
        root = TlsFiles.in_dir(where).root_certificate
        try:
            existing = classify_public_key(x509.load_pem_x509_certificate(root.read_bytes()).public_key())
        except (OSError, ValueError, OtwardError) as exc:
            raise ConfigError(f"--key-type: cannot read the root CA's key type from {root}") from exc
        if existing is not key_type:
            raise ConfigError(
                f"--key-type {key_type.value}: the CAs of {where} have {existing.value} keys; "
                "--key-type applies only when serve creates a data directory",
                rule="first-run-option",
            )


def _service_san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(sans)


def renew_service_certificate_if_due(pki: Pki, data_dir: Path, actor: Actor = SYSTEM_ACTOR) -> str | None:
    """Give the service a new key and certificate when the configured names (``[server] names``)
    are not the ones it has, or once two thirds of its lifetime have passed; the workers pick the
    files up (``http.server``). Returns why it was renewed, None when it was not.

    Nodes on one database with the same names share one identity: it is renewed once, by the node
    that holds the cluster lock, and stored (its key encrypted) in the database; every other node
    installs it from there at its next check instead of renewing it again."""
    tls = TlsFiles.in_dir(data_dir)
    with pki.stores.database.singleton("service-identity") as held:
        installed = _install_shared_identity(pki, tls)
        reason = _renewal_reason(pki, tls) if held else None
        if reason is None:
            if held:
                _publish_identity(pki, tls, replace=False)  # made before nodes shared it, or at init
            return "installed the identity another node renewed" if installed else None
        _write_service_identity(pki, tls, actor, replace=True)
    return reason


def _renewal_reason(pki: Pki, tls: TlsFiles) -> str | None:
    current = x509.load_pem_x509_certificates(tls.certificate_chain.read_bytes())[0]
    has = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    start, end = current.not_valid_before_utc, current.not_valid_after_utc
    if set(has) != set(_service_san(pki.settings.server.names)):
        return "its names changed to " + ", ".join(pki.settings.server.names)
    if pki.clock() >= start + (end - start) * 2 / 3:
        return "two thirds of its lifetime passed"
    return None


_KEY_MARKER = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"


def _identity_name(names: tuple[str, ...]) -> str:
    """The shared-file name of the identity for ``names`` (nodes serving other names have their own)."""
    return "service-tls:" + hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:32]


def _publish_identity(pki: Pki, tls: TlsFiles, *, replace: bool) -> None:
    """Store this node's identity (chain, then the encrypted key) for the other nodes."""
    data = tls.certificate_chain.read_bytes() + tls.private_key.read_bytes()
    if not replace and pki.stores.shared_files.get_shared(_identity_name(pki.settings.server.names)):
        return
    try:
        pki.stores.shared_files.put_shared(_identity_name(pki.settings.server.names), data, replace=replace)
    except ConflictError:
        pass  # another node published its copy of the same identity first


def _install_shared_identity(pki: Pki, tls: TlsFiles) -> bool:
    """Install the identity another node stored, if it differs from this node's files."""
    data = pki.stores.shared_files.get_shared(_identity_name(pki.settings.server.names))
    if data is None or _KEY_MARKER not in data:
        return False
    chain_pem, _, key_body = data.partition(_KEY_MARKER)
    key_pem = _KEY_MARKER + key_body
    if chain_pem == tls.certificate_chain.read_bytes() and key_pem == tls.private_key.read_bytes():
        return False
    _replace_files(((tls.private_key, key_pem), (tls.certificate_chain, chain_pem)))
    return True


def _replace_files(files: tuple[tuple[Path, bytes], ...]) -> None:
    """Write each file aside and rename it over the old one: a reader sees an old or a new file."""
    for path, content in files:
        aside = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        write_private_file(aside, content)
        os.replace(aside, path)


def _write_service_identity(pki: Pki, tls: TlsFiles, actor: Actor, *, replace: bool) -> None:
    """A new key and tls-server certificate for the configured names (CN the first that fits its
    64 characters, O the organization), written key first; when replacing, each file is written
    aside and renamed over the old one, so a reader sees an old or a new file, never half of one."""
    names = pki.settings.server.names
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, pki.settings.organization[:64])]
    common_name = next((name for name in names if len(name) <= 64), None)
    if common_name is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    subject = x509.Name(attributes)
    key = generate_private_key(KeyType.EC_P256)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(_service_san(names), critical=False)
        .sign(key, signature_hash_for(key))  # type: ignore[arg-type]
    )
    issued = pki.issuance.issue(
        csr.public_bytes(serialization.Encoding.PEM), profile="tls-server", ca=ISSUING_CA, actor=actor
    )
    passphrase = read_passphrase(tls.certificate_chain.parent.parent)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    chain = [issued.certificate, *issued.chain[:-1]]
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    files = ((tls.private_key, key_pem), (tls.certificate_chain, chain_pem))
    if replace:
        _replace_files(files)
    else:
        for path, content in files:
            write_private_file(path, content)
        tls.root_certificate.write_bytes(issued.chain[-1].public_bytes(serialization.Encoding.PEM))
    _publish_identity(pki, tls, replace=replace)

"""Settings of an otward installation, read from ``DATA/config.toml`` and the environment.

The data directory holds everything: ``config.toml``, the SQLite database,
encrypted keys under ``keys/``, the service's TLS files and the admin token.
The environment overrides: ``OTWARD_DATA`` (data directory), ``OTWARD_DB``
(database URL), ``OTWARD_CA_PASSPHRASE`` or ``OTWARD_CA_PASSPHRASE_FILE``.

Secrets stay out of ``config.toml``: a database URL given to ``otward init`` is
stored without its password, which goes to ``db.password`` (mode 0600) next to it;
URLs are shown masked (:func:`mask_database_url`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from otward.core.durations import parse_duration
from otward.core.names import is_valid_dns_name
from otward.core.notifications import is_loopback_host
from otward.core.profiles import BUILTIN_PROFILES, Profile, apply_overrides
from otward.errors import ConfigError, InvalidRequestError

__all__ = [
    "CONFIG_FILE",
    "DB_PASSWORD_FILE",
    "DEFAULT_SERVICE_NAMES",
    "AuditSettings",
    "ConnectionLimitSettings",
    "ConsoleSettings",
    "CrlSettings",
    "DeviceSettings",
    "KeySettings",
    "MqttSettings",
    "NotifySettings",
    "OcspSettings",
    "ServerSettings",
    "Settings",
    "SmtpSettings",
    "WebhookSettings",
    "default_data_dir",
    "default_public_url",
    "load_settings",
    "mask_database_url",
    "parse_service_names",
    "parse_trusted_proxies",
    "read_passphrase",
    "render_config",
    "split_database_password",
    "write_key_settings",
]

CONFIG_FILE = "config.toml"
PASSPHRASE_FILE = "ca.pass"  # noqa: S105 - a file name, not a secret
DB_PASSWORD_FILE = "db.password"  # noqa: S105 - a file name, not a secret
# What the service's TLS certificate covers unless told more: the host it runs on, seen from itself.
DEFAULT_SERVICE_NAMES = ("localhost", "127.0.0.1")


class CrlSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    validity_hours: int = Field(default=168, ge=1, le=24 * 90)
    refresh_hours: int = Field(default=24, ge=1)

    @model_validator(mode="after")
    def _refresh_within_validity(self) -> CrlSettings:
        if self.refresh_hours >= self.validity_hours:
            raise ValueError("crl.refresh_hours must be less than crl.validity_hours")
        return self

    @property
    def validity(self) -> timedelta:
        return timedelta(hours=self.validity_hours)

    @property
    def refresh_margin(self) -> timedelta:
        return timedelta(hours=self.refresh_hours)


class OcspSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    validity_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    cache_seconds: int = Field(default=60, ge=0, le=3600)

    @model_validator(mode="after")
    def _cache_within_validity(self) -> OcspSettings:
        if self.cache_seconds >= self.validity_minutes * 60:
            raise ValueError("ocsp.cache_seconds must be less than ocsp.validity_minutes")
        return self


class AuditSettings(BaseModel):
    """Where the audit trail is forwarded; events wait in the database while the collector is away."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    syslog_target: str | None = None  # host:port of an RFC 5425 (syslog over TLS) collector
    syslog_ca_file: str | None = None  # CA that certified the collector
    syslog_client_certificate: str | None = None
    syslog_client_key: str | None = None
    forward_seconds: float = Field(default=2.0, gt=0, le=3600)
    # The service signs the chain head after sign_events new records or sign_seconds after the last
    # head once it moved, and every heartbeat_seconds regardless; verification fails once records
    # have been unsigned for longer than max_unsigned_seconds (docs/audit.md).
    sign_events: int = Field(default=1000, ge=1, le=1_000_000)
    sign_seconds: float = Field(default=10.0, ge=1, le=3600)
    heartbeat_seconds: float = Field(default=60.0, ge=1, le=86400)
    max_unsigned_seconds: float = Field(default=300.0, gt=0, le=30 * 86400)

    @model_validator(mode="after")
    def _signing_fits_the_limit(self) -> AuditSettings:
        # A live service's newest head is at most max(heartbeat, sign interval) old, plus a tick;
        # twice that leaves room for a slow database without failing its own verification.
        if self.max_unsigned_seconds < 2 * max(self.heartbeat_seconds, self.sign_seconds):
            raise ValueError(
                "audit.max_unsigned_seconds must be at least twice audit.heartbeat_seconds and "
                "audit.sign_seconds"
            )
        return self

    @model_validator(mode="after")
    def _target_complete(self) -> AuditSettings:
        if self.syslog_target is not None:
            host, _, port = self.syslog_target.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError("audit.syslog_target must be host:port")
            if not self.syslog_ca_file:
                raise ValueError("audit.syslog_ca_file is required with audit.syslog_target (TLS only)")
        return self

    @property
    def syslog_address(self) -> tuple[str, int] | None:
        if self.syslog_target is None:
            return None
        host, _, port = self.syslog_target.rpartition(":")
        return host.strip("[]"), int(port)


def parse_trusted_proxies(values: Iterable[str]) -> tuple[str, ...]:
    """Addresses or networks (``10.0.0.0/8``) of reverse proxies whose ``X-Forwarded-For`` and
    ``-Proto`` are believed; ValueError for anything else, ``*`` included: with it every client
    would choose its own source address (and escape the per-source limits)."""
    proxies = []
    for value in values:
        text = value.strip()
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"trusted proxy {value!r} is not an IP address or network") from None
        proxies.append(text)
    return tuple(proxies)


def parse_service_names(values: Iterable[str]) -> tuple[str, ...]:
    """The names the service's TLS certificate covers: host names (lower-cased, no wildcard) and IP
    addresses (normalised), each once, in order; ValueError for anything else or for none."""
    names: list[str] = []
    for value in values:
        text = value.strip().lower()
        try:
            text = str(ipaddress.ip_address(text))
        except ValueError:
            if not is_valid_dns_name(text) or text.startswith("*."):
                raise ValueError(f"service name {value!r} is not a DNS host name or an IP address") from None
        if text not in names:
            names.append(text)
    if not names:
        raise ValueError("the service needs at least one name (a DNS name or an IP address)")
    return tuple(names)


def default_public_url(host: str, port: int = 8080) -> str:
    """``http://HOST:PORT``, the base of CRL and OCSP URLs, for a host name or an IP address."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ConnectionLimitSettings(BaseModel):
    """``[server.limits]``: what one client may hold of ``otward serve``'s HTTPS and plain-HTTP
    ports, and for how long (``otward.web.connections``; docs/settings.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_connections: int = Field(default=1000, ge=1, le=1_000_000)  # per port, all workers
    max_connections_per_source: int = Field(default=64, ge=1, le=1_000_000)  # per client address
    handshake_timeout: float = Field(default=10.0, gt=0, le=3600)
    header_timeout: float = Field(default=10.0, gt=0, le=3600)
    body_timeout: float = Field(default=30.0, gt=0, le=3600)
    idle_timeout: float = Field(default=15.0, gt=0, le=3600)
    write_timeout: float = Field(default=30.0, gt=0, le=3600)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    max_header_fields: int = Field(default=100, ge=10, le=10_000)

    @model_validator(mode="after")
    def _per_source_within_total(self) -> ConnectionLimitSettings:
        if self.max_connections_per_source > self.max_connections:
            raise ValueError("max_connections_per_source must not exceed max_connections")
        return self


class ServerSettings(BaseModel):
    """``otward serve``: the names its TLS certificate covers (a change reissues it at the next
    start), which reverse proxies may tell the client's address (none by default), and the
    connection limits of its ports."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    names: tuple[str, ...] = DEFAULT_SERVICE_NAMES
    trusted_proxies: tuple[str, ...] = ()
    limits: ConnectionLimitSettings = ConnectionLimitSettings()

    @field_validator("names")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return parse_service_names(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return parse_trusted_proxies(value)


class MqttSettings(BaseModel):
    """A Mosquitto listener written by ``otward mqtt-config`` that the running service keeps current."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config_dir: str | None = None  # the --out directory of ``otward mqtt-config``
    refresh_seconds: float = Field(default=30.0, gt=0, le=86400)
    pid_file: str | None = None  # Mosquitto's pid file: SIGHUP it when the files changed


class DeviceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # how long a renewed device's previous certificate stays unrevoked unless the device uses its new one
    superseded_overlap_minutes: int = Field(default=60, ge=0, le=7 * 24 * 60)

    @property
    def superseded_overlap(self) -> timedelta:
        return timedelta(minutes=self.superseded_overlap_minutes)


class KeySettings(BaseModel):
    """Where CA, responder and signer keys live: encrypted files in the data directory, or a PKCS#11
    token (docs/hsm.md). The PIN is never stored here: ``$OTWARD_PKCS11_PIN`` or ``pkcs11_pin_file``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["file", "pkcs11"] = "file"
    pkcs11_module: Path | None = None
    pkcs11_token: str | None = None
    pkcs11_pin_file: Path | None = None

    @model_validator(mode="after")
    def _pkcs11_complete(self) -> KeySettings:
        if self.backend == "pkcs11" and (self.pkcs11_module is None or not self.pkcs11_token):
            raise ValueError(
                'keys.pkcs11_module and keys.pkcs11_token are required with keys.backend = "pkcs11"'
            )
        return self


_NOTIFY_EVENTS = ("cert.expiring", "ca.expiring", "crl.failed", "audit.failed", "key.failed", "enroll.flood")


def _duration(value: str, key: str, *, least: timedelta, most: timedelta | None = None) -> timedelta:
    try:
        parsed = parse_duration(value)
    except InvalidRequestError:
        raise ValueError(f"{key} must be a duration such as 15m, 1h or 30s, not {value!r}") from None
    if parsed < least:
        raise ValueError(f"{key} must be at least {int(least.total_seconds())} s")
    if most is not None and parsed > most:
        raise ValueError(f"{key} must be at most {int(most.total_seconds())} s")
    return parsed


def _notify_events(value: tuple[str, ...], key: str) -> tuple[str, ...]:
    unknown = [event for event in value if event not in _NOTIFY_EVENTS]
    if unknown:
        raise ValueError(f"{key}: unknown event {unknown[0]!r} (known: {', '.join(_NOTIFY_EVENTS)})")
    if not value:
        raise ValueError(f"{key} must name at least one event (leave it out for all)")
    return value


class WebhookSettings(BaseModel):
    """``[[notify.webhook]]``: a URL that receives signed JSON (docs/notifications.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    secret_file: Path  # the HMAC key; must be mode 0600 (checked when the channel is opened)
    events: tuple[str, ...] = _NOTIFY_EVENTS
    ca_file: Path | None = None  # verify the server against this CA instead of the system store

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"url {value!r} must be an https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("url must not hold a user name or password (the secret goes in secret_file)")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ValueError(
                f"url {value!r}: plain http:// is accepted only for a loopback address; use https://"
            )
        try:
            parts.port  # noqa: B018 - raises on a port out of range
        except ValueError:
            raise ValueError(f"url {value!r} has an invalid port") from None
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _notify_events(value, "events")


class SmtpSettings(BaseModel):
    """``[notify.smtp]``: e-mail through an SMTP server; STARTTLS is required unless the host is a
    loopback address (then used when offered)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    sender: str = Field(alias="from")
    to: tuple[str, ...] = Field(min_length=1)
    username: str | None = None
    password_file: Path | None = None  # mode 0600, like every secret file
    ca_file: Path | None = None
    events: tuple[str, ...] = _NOTIFY_EVENTS

    @field_validator("events")
    @classmethod
    def _events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _notify_events(value, "events")

    @field_validator("sender", "to")
    @classmethod
    def _addresses(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        for address in (value,) if isinstance(value, str) else value:
            local, at, domain = address.rpartition("@")
            if not at or not local or not domain or any(c in address for c in "\r\n,<> "):
                raise ValueError(f"{address!r} is not a plain e-mail address (user@example.com)")
        return value

    @model_validator(mode="after")
    def _secure(self) -> SmtpSettings:
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together")
        return self


class NotifySettings(BaseModel):
    """``[notify]``: what is checked every ``interval`` and where messages go (docs/notifications.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval: str = "15m"
    installation: str | None = None  # the name in every message [default: organization]
    expiring_within_days: tuple[int, ...] = (30, 7)  # a certificate is announced once at each
    ca_expiring_within_days: tuple[int, ...] = (90, 30, 7)
    enroll_flood_window: str = "15m"
    enroll_refused_threshold: int = Field(default=100, ge=1)
    enroll_accepted_threshold: int = Field(default=1000, ge=1)
    retry_base_seconds: float = Field(default=30.0, gt=0, le=3600)
    retry_max_seconds: float = Field(default=3600.0, gt=0, le=86400)
    max_attempts: int = Field(default=12, ge=1, le=100)
    webhook: tuple[WebhookSettings, ...] = ()
    smtp: SmtpSettings | None = None

    @field_validator("expiring_within_days", "ca_expiring_within_days")
    @classmethod
    def _marks(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(m < 1 or m > 3650 for m in value):
            raise ValueError("must list days between 1 and 3650")
        return tuple(sorted(set(value), reverse=True))

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        _duration(value, "interval", least=timedelta(seconds=10))
        return value

    @field_validator("enroll_flood_window")
    @classmethod
    def _window(cls, value: str) -> str:
        _duration(value, "enroll_flood_window", least=timedelta(minutes=1))
        return value

    @model_validator(mode="after")
    def _retry_cap(self) -> NotifySettings:
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError("notify.retry_max_seconds must not be less than notify.retry_base_seconds")
        return self

    @property
    def interval_delta(self) -> timedelta:
        return parse_duration(self.interval)

    @property
    def flood_window(self) -> timedelta:
        return parse_duration(self.enroll_flood_window)


class ApprovalSettings(BaseModel):
    """``[approvals]``: four-eyes approval of CA creation and revocation, signer rotation with
    revocation and role changes (docs/administration.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["auto", "on", "off"] = "auto"  # auto: on once two enabled accounts hold admin
    expires: str = "24h"  # how long a request waits for its second account
    bulk_revocation_threshold: int = Field(default=10, ge=1, le=1_000_000)

    @field_validator("expires")
    @classmethod
    def _duration(cls, value: str) -> str:
        try:
            lifetime = parse_duration(value)
        except InvalidRequestError as exc:
            raise ValueError(exc.message) from None
        if not timedelta(minutes=5) <= lifetime <= timedelta(days=30):
            raise ValueError("must lie between 5m and 30d")
        return value

    @property
    def lifetime(self) -> timedelta:
        return parse_duration(self.expires)


class ConsoleSettings(BaseModel):
    """``[console]``: the web console under /ui (docs/console.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    idle_timeout: str = "15m"  # a session ends after this long without a request
    absolute_timeout: str = "8h"  # and this long after sign-in, whatever happens

    @field_validator("idle_timeout", "absolute_timeout")
    @classmethod
    def _timeout(cls, value: str, info: ValidationInfo) -> str:
        _duration(value, f"console.{info.field_name}", least=timedelta(minutes=1), most=timedelta(days=1))
        return value

    @model_validator(mode="after")
    def _idle_within_absolute(self) -> ConsoleSettings:
        if parse_duration(self.idle_timeout) > parse_duration(self.absolute_timeout):
            raise ValueError("console.idle_timeout must not exceed console.absolute_timeout")
        return self

    @property
    def idle(self) -> timedelta:
        return parse_duration(self.idle_timeout)

    @property
    def absolute(self) -> timedelta:
        return parse_duration(self.absolute_timeout)


class Settings(BaseModel):
    """One installation's settings; validated as a whole when loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path
    database_url: str = Field(repr=False)  # may hold the database password
    organization: str = "otward"
    public_url: str = "http://127.0.0.1:8080"
    crl: CrlSettings = CrlSettings()
    ocsp: OcspSettings = OcspSettings()
    audit: AuditSettings = AuditSettings()
    mqtt: MqttSettings = MqttSettings()
    devices: DeviceSettings = DeviceSettings()
    server: ServerSettings = ServerSettings()
    keys: KeySettings = KeySettings()
    notify: NotifySettings = NotifySettings()
    approvals: ApprovalSettings = ApprovalSettings()
    console: ConsoleSettings = ConsoleSettings()
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # the revocation journal (docs/backup.md); relative to the data directory, better on another disk
    revocation_journal: Path = Path("revocations.jsonl")

    @property
    def revocation_journal_path(self) -> Path:
        return self.data_dir / self.revocation_journal

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith("http://") or len(value) < 8:
            raise ValueError(
                "public_url must be a plain http:// URL: relying parties fetch CRLs and OCSP without TLS"
            )
        return value.rstrip("/")

    def resolved_profiles(self) -> dict[str, Profile]:
        return apply_overrides(BUILTIN_PROFILES, self.profiles)

    @model_validator(mode="after")
    def _profiles_valid(self) -> Settings:
        self.resolved_profiles()
        return self


def default_data_dir() -> Path:
    """``OTWARD_DATA`` if set, else the per-user data directory."""
    env = os.environ.get("OTWARD_DATA")
    return Path(env) if env else Path(platformdirs.user_data_dir("otward", appauthor=False))


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'otward.db').resolve()}"


def load_settings(data_dir: Path, *, database_url: str | None = None) -> Settings:
    """Read ``DATA/config.toml``; ``database_url`` (or ``OTWARD_DB``) overrides the stored one."""
    path = data_dir / CONFIG_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{data_dir} is not an otward data directory (no {CONFIG_FILE}); run 'otward init'"
        ) from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    except RecursionError:  # tomllib recurses once per level of nested arrays and inline tables
        raise ConfigError(f"cannot read {path}: nested too deeply") from None
    raw["data_dir"] = data_dir
    url = database_url or os.environ.get("OTWARD_DB")
    if not url and raw.get("database_url"):
        url = _with_stored_password(str(raw["database_url"]), data_dir / DB_PASSWORD_FILE)
    raw["database_url"] = url or default_database_url(data_dir)
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        dotted = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
        raise ConfigError(f"{path}: {dotted}: {first['msg']}") from None


def split_database_password(url: str) -> tuple[str, str | None]:
    """``url`` without its password, and the password (None when it has none)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(f"database URL {mask_database_url(url)} cannot be parsed") from None
    if parsed.password is None:
        return url, None
    without = URL.create(
        parsed.drivername,
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=parsed.query,
    )
    return without.render_as_string(hide_password=False), str(parsed.password)


def mask_database_url(url: str) -> str:
    """``url`` with its password shown as ``***``: how a database URL is printed or logged."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        scheme, separator, _ = url.partition("://")
        return f"{scheme}://***" if separator else "***"


def _with_stored_password(url: str, password_file: Path) -> str:
    """The configured URL with the password ``otward init`` kept in ``db.password``, if any."""
    try:
        password = password_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return url
    except OSError as exc:
        raise ConfigError(f"cannot read {password_file}: {exc.strerror}") from None
    parsed = make_url(url)
    if not password or parsed.password is not None:
        return url
    return parsed.set(password=password).render_as_string(hide_password=False)


def render_config(
    *,
    organization: str,
    public_url: str,
    database_url: str | None,
    names: tuple[str, ...] = DEFAULT_SERVICE_NAMES,
    keys: KeySettings | None = None,
) -> str:
    """The initial ``config.toml`` written by ``otward init`` (strings JSON-escaped, valid TOML).

    ``database_url`` must come without a password (:func:`split_database_password`)."""
    lines = [
        "# otward configuration. See docs/settings.md for every key.",
        f"organization = {json.dumps(organization)}",
        "# Base URL written into certificates for CRL, OCSP and CA-issuer links (plain HTTP).",
        f"public_url = {json.dumps(public_url)}",
    ]
    if database_url:
        lines.append(f"database_url = {json.dumps(database_url)}")
    else:
        lines.append('# database_url = "postgresql+psycopg://user@host/db"  (default: otward.db here)')
    lines.append("# The revocation journal restores re-apply (docs/backup.md); better on another disk:")
    lines.append('# revocation_journal = "/var/lib/otward-journal/revocations.jsonl"')
    lines += [
        "",
        "[crl]",
        "validity_hours = 168  # nextUpdate - thisUpdate",
        "refresh_hours = 24    # a CRL is regenerated when less than this remains",
        "",
        "[ocsp]",
        "validity_minutes = 60  # nextUpdate - thisUpdate of each response",
        "cache_seconds = 60     # a signed response without nonce is reused this long",
        "",
        "[audit]",
        "# Forward every audit event to a syslog collector over TLS (RFC 5425):",
        '# syslog_target = "collector.plant.example:6514"',
        '# syslog_ca_file = "/etc/otward/collector-ca.pem"',
        "# The service signs the chain head after sign_events records or sign_seconds, and every",
        "# heartbeat_seconds; verification fails on records unsigned for max_unsigned_seconds:",
        "# sign_events = 1000",
        "# sign_seconds = 10",
        "# heartbeat_seconds = 60",
        "# max_unsigned_seconds = 300",
        "",
        "[server]",
        "# DNS names and IP addresses in the service's TLS certificate (the first is its CN);",
        "# after a change, the next `otward serve` reissues the certificate:",
        f"names = {json.dumps(list(names))}",
        "# Reverse proxies whose X-Forwarded-For is believed (none: the TCP peer is the client):",
        '# trusted_proxies = ["10.0.0.5"]',
        "",
        "# [server.limits]  # per port; see docs/settings.md",
        "# max_connections = 1000",
        "# max_connections_per_source = 64  # trusted proxies are exempt",
        "# header_timeout = 10  # seconds for a request head; body_timeout = 30 for its body",
        "",
        *_render_keys(keys or KeySettings()),
        "[mqtt]",
        "# Keep the CRLs, CA file and ACL of an `otward mqtt-config --out DIR` listener current:",
        '# config_dir = "/etc/mosquitto/otward"',
        "# refresh_seconds = 30",
        '# pid_file = "/run/mosquitto/mosquitto.pid"  # SIGHUP the broker when they change',
        "",
        "# Profile overrides, for example:",
        "# [profiles.tls-server]",
        "# max_validity_days = 90",
        "# default_validity_days = 90",
        "",
    ]
    return "\n".join(lines)


def _render_keys(keys: KeySettings) -> list[str]:
    lines = [
        "[keys]",
        "# Where CA, responder and signer keys live: file (encrypted, keys/) or pkcs11 (docs/hsm.md).",
    ]
    if keys.backend == "file":
        return [
            *lines,
            'backend = "file"',
            '# backend = "pkcs11"',
            '# pkcs11_module = "/usr/lib/softhsm/libsofthsm2.so"',
            '# pkcs11_token = "otward"',
            '# pkcs11_pin_file = "/etc/otward/pkcs11.pin"  # or $OTWARD_PKCS11_PIN',
            "",
        ]
    lines += ['backend = "pkcs11"', f"pkcs11_module = {json.dumps(str(keys.pkcs11_module))}"]
    lines.append(f"pkcs11_token = {json.dumps(keys.pkcs11_token)}")
    if keys.pkcs11_pin_file is not None:
        lines.append(f"pkcs11_pin_file = {json.dumps(str(keys.pkcs11_pin_file))}")
    else:
        lines.append("# pkcs11_pin_file = ...  (the PIN comes from $OTWARD_PKCS11_PIN)")
    return [*lines, ""]


def write_key_settings(data_dir: Path, keys: KeySettings) -> None:
    """Replace the ``[keys]`` table of ``DATA/config.toml`` (or add one), keeping everything else as
    written; the file is replaced whole (written aside, renamed), and must still load."""
    path = data_dir / CONFIG_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    start = next((i for i, line in enumerate(lines) if line.strip() == "[keys]"), None)
    if start is None:
        kept, rest = lines, []
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
        kept, rest = lines[:start], lines[end:]
    if kept and kept[-1].strip():
        kept.append("")
    text = "\n".join([*kept, *_render_keys(keys), *rest]).rstrip("\n") + "\n"
    aside = path.with_name(f".{CONFIG_FILE}.new")
    aside.write_text(text, encoding="utf-8")
    os.replace(aside, path)
    load_settings(data_dir)


def read_passphrase(data_dir: Path) -> bytes:
    """The CA key passphrase: ``OTWARD_CA_PASSPHRASE``, the file named by
    ``OTWARD_CA_PASSPHRASE_FILE``, or ``DATA/ca.pass``."""
    env = os.environ.get("OTWARD_CA_PASSPHRASE")
    if env:
        return env.encode()
    file_env = os.environ.get("OTWARD_CA_PASSPHRASE_FILE")
    path = Path(file_env) if file_env else data_dir / PASSPHRASE_FILE
    try:
        value = path.read_bytes().strip()
    except FileNotFoundError:
        raise ConfigError(
            f"no CA passphrase: set OTWARD_CA_PASSPHRASE or OTWARD_CA_PASSPHRASE_FILE, or create {path}"
        ) from None
    if not value:
        raise ConfigError(f"CA passphrase file {path} is empty")
    return value

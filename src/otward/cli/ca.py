"""``otward ca create|import-cert|sign-csr|renew|rollover|revoke|list|export|pin|migrate-keys``."""

from __future__ import annotations

import contextlib
import ipaddress
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from rich.markup import escape

from otward.cli.approvals import gate
from otward.cli.common import (
    Column,
    DataOption,
    DbOption,
    ForceOption,
    JsonOption,
    check_output,
    cli_actor,
    console,
    count_line,
    handle_errors,
    open_pki,
    print_json,
    print_listing,
    working,
    write_output,
)
from otward.config import KeySettings
from otward.core.approvals import Operation
from otward.core.ca_lifecycle import expiry_marks_crossed
from otward.core.csr import load_csr
from otward.core.keys import KeyType, spki_pin
from otward.core.records import AuthorityRecord
from otward.core.revocation import parse_reason
from otward.errors import ConfigError, InvalidRequestError, PolicyViolationError
from otward.http.schemas import AuthorityOut
from otward.services.bootstrap import ISSUING_CA, complete_external_init
from otward.services.key_migration import migrate_keys_to_pkcs11
from otward.services.pki import ROOT_CERTIFICATE_FILE, Pki, load_trust_anchors

app = typer.Typer(
    help="Certificate authorities: create sub-CAs, list them, export chains.", no_args_is_help=True
)


@app.command("create")
@handle_errors
def create(
    name: Annotated[str, typer.Argument(help="Name of the new CA (lower-case, e.g. plant-a)")],
    parent: Annotated[
        str | None, typer.Option("--parent", help="CA of this installation that signs the new one")
    ] = None,
    external_parent: Annotated[
        bool,
        typer.Option(
            "--external-parent",
            help="The parent is outside otward (an offline or company root): write a CSR (--csr-out)"
            " and wait for the signed certificate (ca import-cert)",
        ),
    ] = False,
    csr_out: Annotated[
        Path | None, typer.Option("--csr-out", help="With --external-parent: where the PEM CSR is written")
    ] = None,
    path_len: Annotated[int, typer.Option("--path-len", help="pathLenConstraint of the new CA")] = 0,
    permitted_dns: Annotated[
        list[str] | None,
        typer.Option("--permitted-dns", help="Name constraint: permitted DNS subtree (repeatable)"),
    ] = None,
    permitted_ip: Annotated[
        list[str] | None,
        typer.Option(
            "--permitted-ip", help="Name constraint: permitted IP network, e.g. 10.20.0.0/16 (repeatable)"
        ),
    ] = None,
    key_type: Annotated[
        str, typer.Option("--key-type", help="ec-p256, ec-p384, ec-p521, ed25519, rsa-2048/3072/4096")
    ] = "ec-p256",
    org: Annotated[
        str | None, typer.Option("--org", help="Organization (default: the installation's)")
    ] = None,
    force: ForceOption = False,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a subordinate CA (per plant or per owner), with its own OCSP responder and CRL; or,
    with --external-parent, its key and a CSR for a root outside otward."""
    if external_parent == (parent is not None):
        raise ConfigError("give exactly one of --parent P and --external-parent", rule="ca-parent")
    if external_parent:
        if csr_out is None:
            raise ConfigError("--external-parent needs --csr-out FILE", rule="ca-parent")
        check_output(csr_out, "--csr-out", force=force)
        with open_pki(data, db) as pki:
            if pki.approvals.applies():
                raise PolicyViolationError(
                    "ca create --external-parent cannot wait for approval (the CSR is written where the"
                    " command runs); with [approvals] on, create the CA under a parent of this"
                    ' installation, or set [approvals] mode = "off" for this step',
                    rule="four-eyes",
                )
            csr = pki.authorities.create_pending(
                name,
                key_type=KeyType.parse(key_type),
                organization=org or pki.settings.organization,
                path_length=path_len,
                permitted_dns=tuple(permitted_dns or ()),
                permitted_ip=tuple(_network(n) for n in permitted_ip or ()),
                actor=cli_actor(),
            )
        write_output(csr_out, csr.public_bytes(Encoding.PEM))
        if as_json:
            print_json({"name": name, "status": "pending", "csr": str(csr_out)})
        else:
            console.print(
                f"created CA [bold]{escape(name)}[/] ({escape(csr.subject.rfc4514_string())}), pending: "
                f"have {escape(str(csr_out))} signed by the root, then run otward ca import-cert "
                f"{escape(name)} --cert SIGNED.pem --chain CHAIN.pem",
                highlight=False,
            )
        return
    assert parent is not None  # noqa: S101 - checked above
    with open_pki(data, db) as pki:
        parameters = {
            "name": name,
            "parent": parent,
            "key_type": KeyType.parse(key_type).value,
            "organization": org or pki.settings.organization,
            "path_length": path_len,
            "permitted_dns": list(permitted_dns or ()),
            "permitted_ip": [str(_network(n)) for n in permitted_ip or ()],
        }
        if gate(pki, Operation.CA_CREATE, parameters, as_json=as_json):
            return
        with working(f"creating CA {name}") if not as_json else contextlib.nullcontext():
            loaded = pki.authorities.create_subordinate(
                name,
                parent=parent,
                key_type=KeyType.parse(key_type),
                organization=org or pki.settings.organization,
                path_length=path_len,
                permitted_dns=tuple(permitted_dns or ()),
                permitted_ip=tuple(_network(n) for n in permitted_ip or ()),
                actor=cli_actor(),
            )
            pki.revocation.publish_crl(name, cli_actor())
        out = AuthorityOut.from_record(pki.authorities.record(loaded.name))
    if as_json:
        print_json(out.model_dump(mode="json"))
    else:
        console.print(
            f"created CA [bold]{out.name}[/] ({out.subject}) under {loaded.parent}, "
            f"valid until {out.not_valid_after:%Y-%m-%d}"
        )


def _read_certificates(path: Path, option: str) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{option} {path}: {exc.strerror or exc}", rule="file") from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise InvalidRequestError(
            f"{option} {path} holds no PEM or DER certificate", rule="ca-import"
        ) from None


@app.command("import-cert")
@handle_errors
def import_cert(
    name: Annotated[str, typer.Argument(help="The pending CA (or one under an external root, renewed)")],
    cert: Annotated[Path, typer.Option("--cert", help="The CA certificate signed by the root (PEM or DER)")],
    chain: Annotated[
        Path, typer.Option("--chain", help="PEM of the issuers above it up to and including the root")
    ],
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check a CA certificate signed outside otward (same key, a CA, keyCertSign + cRLSign, pathLen,
    valid now, chains to the root of --chain) and activate the CA: CRL, OCSP responder, trust files."""
    certificates = _read_certificates(cert, "--cert")
    if len(certificates) != 1:
        raise InvalidRequestError(f"--cert {cert} must hold exactly one certificate", rule="ca-import")
    issuers = _read_certificates(chain, "--chain")
    with open_pki(data, db) as pki:
        # An installation whose root is outside otward (init --external-root) trusts only root.pem.
        own_root = any(r.is_root for r in pki.authorities.list())
        anchors_file = pki.settings.data_dir / ROOT_CERTIFICATE_FILE
        anchors = load_trust_anchors(anchors_file) if not own_root and anchors_file.exists() else []
        loaded = pki.authorities.import_certificate(
            name, certificates[0], issuers, trust_anchors=anchors, actor=cli_actor()
        )
        pki.revocation.publish_crl(name, cli_actor())
        service_tls = name == ISSUING_CA and complete_external_init(pki, pki.settings.data_dir, cli_actor())
        out = AuthorityOut.from_record(pki.authorities.record(loaded.name))
    if as_json:
        print_json({**out.model_dump(mode="json"), "service_tls_created": service_tls})
        return
    console.print(
        f"CA [bold]{out.name}[/] active ({escape(out.subject)}), chained to "
        f"{escape(loaded.chain[-1].subject.rfc4514_string())}, valid until {out.not_valid_after:%Y-%m-%d}",
        highlight=False,
    )
    if service_tls:
        console.print("  the service's TLS certificate was issued: otward serve can start", highlight=False)


@app.command("sign-csr")
@handle_errors
def sign_csr(
    csr: Annotated[Path, typer.Argument(help="PKCS#10 request of the other installation's CA (PEM or DER)")],
    parent: Annotated[str, typer.Option("--parent", help="CA of this installation that signs it")],
    out: Annotated[Path, typer.Option("--out", help="Where the signed CA certificate (PEM) is written")],
    path_len: Annotated[
        int | None, typer.Option("--path-len", help="pathLenConstraint [default: what the CSR asks, else 0]")
    ] = None,
    days: Annotated[
        int | None, typer.Option("--days", help="Validity in days [default: 10 years, at most the parent's]")
    ] = None,
    chain_out: Annotated[
        Path | None, typer.Option("--chain-out", help="Also write the parent's chain up to the root (PEM)")
    ] = None,
    force: ForceOption = False,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sign another installation's issuing CA (e.g. on an offline installation holding only the
    root): checks the CSR's signature, key strength and hash; audited as ca.csr_signed."""
    check_output(out, "--out", force=force)
    if chain_out is not None:
        check_output(chain_out, "--chain-out", force=force)
    try:
        raw = csr.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{csr}: {exc.strerror or exc}", rule="file") from None
    request = load_csr(raw)
    with open_pki(data, db) as pki:
        certificate = pki.authorities.sign_csr(
            request, parent=parent, path_length=path_len, days=days, actor=cli_actor()
        )
        issuers = pki.authorities.certificate_chain(pki.authorities.current_name(parent))
    write_output(out, certificate.public_bytes(Encoding.PEM))
    if chain_out is not None:
        write_output(chain_out, b"".join(c.public_bytes(Encoding.PEM) for c in issuers))
    if as_json:
        print_json(
            {
                "serial": f"{certificate.serial_number:x}",
                "subject": certificate.subject.rfc4514_string(),
                "not_valid_after": certificate.not_valid_after_utc,
                "out": str(out),
            }
        )
        return
    console.print(
        f"signed {escape(certificate.subject.rfc4514_string())} (serial {certificate.serial_number:x}), "
        f"valid until {certificate.not_valid_after_utc:%Y-%m-%d}: {escape(str(out))}",
        highlight=False,
    )


@app.command("renew")
@handle_errors
def renew(
    name: Annotated[str, typer.Argument(help="CA name")],
    csr_out: Annotated[
        Path | None,
        typer.Option(
            "--csr-out", help="For a CA under an external root: write a new CSR for its key instead"
        ),
    ] = None,
    force: ForceOption = False,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Same key, same subject, new certificate (from the parent; a root signs itself again): what
    the CA issued stays valid. For a CA under an external root, --csr-out writes the request."""
    if csr_out is not None:
        check_output(csr_out, "--csr-out", force=force)
        with open_pki(data, db) as pki:
            request = pki.authorities.certificate_request(name)
        write_output(csr_out, request.public_bytes(Encoding.PEM))
        console.print(
            f"wrote a CSR for CA {escape(name)}'s key to {escape(str(csr_out))}; have it signed, then "
            f"otward ca import-cert {escape(name)} --cert SIGNED.pem --chain CHAIN.pem",
            highlight=False,
        )
        return
    with open_pki(data, db) as pki:
        loaded = pki.authorities.renew(name, actor=cli_actor())
        pki.revocation.publish_crl(name, cli_actor())
        out = AuthorityOut.from_record(pki.authorities.record(loaded.name))
    if as_json:
        print_json(out.model_dump(mode="json"))
        return
    console.print(
        f"renewed CA [bold]{out.name}[/] (same key), valid until {out.not_valid_after:%Y-%m-%d}",
        highlight=False,
    )


@app.command("rollover")
@handle_errors
def rollover(
    name: Annotated[str, typer.Argument(help="CA name")],
    key_type: Annotated[
        str | None,
        typer.Option("--key-type", help="Key type of the new generation [default: the current one's]"),
    ] = None,
    links_out: Annotated[
        Path | None,
        typer.Option("--links-out", help="Directory for a root's link certificates [default: DATA/ca-links]"),
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """New key and certificate under the next generation's name (NAME-g2): it issues from now on; the
    old generation keeps signing its CRL and answering OCSP until what it issued expires. A root's
    rollover writes the link certificates OldWithNew and NewWithOld (RFC 4210 4.4)."""
    with open_pki(data, db) as pki:
        loaded, links = pki.authorities.rollover(
            name, key_type=KeyType.parse(key_type) if key_type else None, actor=cli_actor()
        )
        pki.revocation.publish_crl(loaded.name, cli_actor())
        written: list[Path] = []
        anchors_added = links and _add_trust_anchor(pki, name, loaded.certificate)
        if links:
            directory = links_out or pki.settings.data_dir / "ca-links"
            directory.mkdir(parents=True, exist_ok=True)
            for label, certificate in zip(("old-with-new", "new-with-old"), links, strict=True):
                path = directory / f"{name}-{loaded.name}-{label}.pem"
                write_output(path, certificate.public_bytes(Encoding.PEM))
                written.append(path)
        out = AuthorityOut.from_record(pki.authorities.record(loaded.name))
    if as_json:
        print_json(
            {
                **out.model_dump(mode="json"),
                "previous": name,
                "links": [str(p) for p in written],
                "root_pem_updated": bool(anchors_added),
            }
        )
        return
    console.print(
        f"rolled CA {escape(name)} over to [bold]{out.name}[/] ({escape(out.subject)}), valid until "
        f"{out.not_valid_after:%Y-%m-%d}; new issuance uses {out.name}, "
        f"{escape(name)} keeps its CRL and OCSP",
        highlight=False,
    )
    for path in written:
        console.print(f"  link certificate: {escape(str(path))}", highlight=False)
    if anchors_added:
        console.print(
            f"  {ROOT_CERTIFICATE_FILE} now holds both roots: hand it to clients before "
            f"{escape(name)} expires",
            highlight=False,
        )


def _add_trust_anchor(pki: Pki, previous: str, new_root: x509.Certificate) -> bool:
    """After a root rollover: DATA/root.pem (what clients pin, the audit trail's anchor) holds the
    new root beside the old one for the overlap. Written whole or not at all."""
    path = pki.settings.data_dir / ROOT_CERTIFICATE_FILE
    try:
        anchors = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError):
        return False
    previous_certificate = pki.authorities.get(previous).certificate
    if previous_certificate not in anchors or new_root in anchors:
        return False
    write_output(path, b"".join(c.public_bytes(Encoding.PEM) for c in (*anchors, new_root)))
    return True


@app.command("revoke")
@handle_errors
def revoke(
    name: Annotated[str, typer.Argument(help="Subordinate CA to revoke")],
    reason: Annotated[
        str,
        typer.Option(
            "--reason", help="RFC 5280 reason, e.g. keyCompromise, cACompromise, cessationOfOperation"
        ),
    ],
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a subordinate CA: its certificate goes on the parent's CRL, it issues nothing more,
    its CRL and OCSP keep answering, and trust files drop it at their next refresh."""
    flag = parse_reason(reason)
    with open_pki(data, db) as pki:
        pki.authorities.record(name)  # an unknown CA is refused now, not at approval
        if gate(pki, Operation.CA_REVOKE, {"name": name, "reason": reason}, as_json=as_json):
            return
        record = pki.revocation.revoke_authority(name, flag, cli_actor())
    if as_json:
        print_json({"name": name, "serial": record.serial, "reason": reason, "parent": record.ca})
        return
    console.print(
        f"revoked CA [bold]{escape(name)}[/] (certificate {record.serial}, reason {reason}); it is on the "
        f"CRL of {escape(record.ca)}",
        highlight=False,
    )


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise InvalidRequestError(
            f"'{text}' is not an IP network such as 10.20.0.0/16", rule="name-constraints"
        ) from None


@app.command("list")
@handle_errors
def list_(data: DataOption = None, db: DbOption = None, as_json: JsonOption = False) -> None:
    """List all CAs."""
    with open_pki(data, db) as pki:
        now = pki.clock()
        rows = []
        for record in pki.authorities.list():
            row = AuthorityOut.from_record(record).model_dump(mode="json", exclude={"certificate"})
            row["status"] = _status(pki, record, now)
            rows.append(row)
        for pending in pki.authorities.pending():
            request = x509.load_der_x509_csr(pending.csr_der)
            rows.append(
                {
                    "name": pending.name,
                    "parent": "(external)",
                    "subject": request.subject.rfc4514_string(),
                    "not_valid_after": None,
                    "path_length": pending.path_length,
                    "permitted_dns": [],
                    "permitted_ip": [],
                    "status": "pending: waits for its certificate (ca import-cert)",
                }
            )
    columns: dict[str, Column] = {"name": "name", "parent": "parent", "subject": "subject"}
    columns["path len"] = "path_length"
    columns["permitted DNS"] = "permitted_dns"
    columns["valid until"] = lambda row: (row["not_valid_after"] or "")[:10]
    columns["status"] = "status"
    print_listing(rows, columns, as_json=as_json, summary=count_line(len(rows), None, "CA"))


def _status(pki: Pki, record: AuthorityRecord, now: datetime) -> str:
    """active, revoked, superseded, expired, or a warning from 90 days before notAfter."""
    revoked = pki.authorities.revocation_of(record.name)
    if revoked is not None:
        return "revoked" if revoked[0] == record.name else f"revoked (parent {revoked[0]})"
    if record.superseded_by is not None:
        return f"superseded by {record.superseded_by} (CRL and OCSP only)"
    end = x509.load_der_x509_certificate(record.certificate_der).not_valid_after_utc
    if end <= now:
        return "expired"
    if expiry_marks_crossed(end, now):
        return f"expires in {(end - now).days} days: renew or roll over"
    return "active"


@app.command("export")
@handle_errors
def export(
    name: Annotated[str, typer.Argument(help="CA name")],
    data: DataOption = None,
    db: DbOption = None,
) -> None:
    """Print the PEM chain from CA NAME up to the root on stdout."""
    with open_pki(data, db) as pki:
        chain = pki.authorities.certificate_chain(name)
    typer.echo("".join(c.public_bytes(Encoding.PEM).decode() for c in chain), nl=False)


@app.command("pin")
@handle_errors
def pin(
    name: Annotated[str, typer.Argument(help="CA name")] = "root",
    data: DataOption = None,
    db: DbOption = None,
) -> None:
    """Print the pin for ``otward agent enroll --pin``: sha256/<base64> of the CA's public key.

    Pin the root: it outlives the service's TLS certificate and the issuing CA."""
    with open_pki(data, db) as pki:
        certificate = pki.authorities.get(name).certificate
    typer.echo(spki_pin(certificate.public_key()))


@app.command("migrate-keys")
@handle_errors
def migrate_keys(
    to: Annotated[str, typer.Option("--to", help="Key backend to move the key files into: pkcs11")],
    pkcs11_module: Annotated[
        Path | None,
        typer.Option("--pkcs11-module", help="PKCS#11 module (.so) [default: keys.pkcs11_module]"),
    ] = None,
    pkcs11_token: Annotated[
        str | None, typer.Option("--pkcs11-token", help="Token label [default: keys.pkcs11_token]")
    ] = None,
    pkcs11_pin_file: Annotated[
        Path | None,
        typer.Option(
            "--pkcs11-pin-file",
            help="File (0600) with the user PIN; else $OTWARD_PKCS11_PIN [default: keys.pkcs11_pin_file]",
        ),
    ] = None,
    data: DataOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move the CA, responder and signer key files into a PKCS#11 token (imported sensitive and
    non-extractable), switch config.toml to the token and delete the files. Stop the service first.
    For tokens that refuse key import, see docs/hsm.md (rollover)."""
    if to != "pkcs11":
        raise ConfigError(f"--to {to!r}: keys can be moved to pkcs11 only", rule="key-backend")
    with open_pki(data, db) as pki:
        configured = pki.settings.keys
        module = pkcs11_module or configured.pkcs11_module
        token = pkcs11_token or configured.pkcs11_token
        if module is None or not token:
            raise ConfigError("give --pkcs11-module and --pkcs11-token", rule="key-backend")
        pin_file = pkcs11_pin_file or configured.pkcs11_pin_file
        target = KeySettings(
            backend="pkcs11",
            pkcs11_module=module.absolute(),
            pkcs11_token=token,
            pkcs11_pin_file=pin_file.absolute() if pin_file is not None else None,
        )
        moved = migrate_keys_to_pkcs11(pki, target, cli_actor())
    if as_json:
        print_json({"token": token, "moved": [{"from": m.old_ref, "to": m.new_ref} for m in moved]})
        return
    if not moved:
        console.print("no key files to move: every key is in the token already", highlight=False)
        return
    console.print(f"moved {len(moved)} keys into token {escape(token)}:", highlight=False)
    for move in moved:
        console.print(f"  {escape(move.old_ref)} -> {escape(move.new_ref)}", highlight=False)

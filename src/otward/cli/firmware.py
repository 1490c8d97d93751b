"""``otward firmware sign|verify|boot-chain``: signed firmware manifests and a simulated staged secure boot.

The commands read and write files and print; the manifest format, the algorithm policy, verification
and the boot chain live in :mod:`otward.core.firmware` (docs/firmware.md).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from rich.markup import escape

from otward.adapters.audit_file import FileAuditTrail
from otward.adapters.files import read_limited
from otward.adapters.firmware_files import (
    FileStageLoader,
    load_certificates,
    load_pin,
    load_signing_key,
    measure_image,
    read_boot_chain,
    read_manifest,
    write_counters,
)
from otward.cli.assess import OutOption, emit_findings, now, tool_name
from otward.cli.common import (
    ForceOption,
    JsonOption,
    check_output,
    cli_actor,
    console,
    err_console,
    handle_errors,
    print_json,
    write_output,
)
from otward.core.assess.findings import Finding, FindingsDocument, dump_findings
from otward.core.audit import AuditEvent, EventType, Outcome
from otward.core.firmware.boot import BootOutcome, boot
from otward.core.firmware.checks import finding_for, is_firmware_check
from otward.core.firmware.envelope import RsaPadding, hash_for_name, sign_content, validate_signing_key
from otward.core.firmware.manifest import MAX_VERSION, Manifest, dump_manifest, key_pin, parse_digest_name
from otward.core.firmware.verify import Verified, verify_firmware
from otward.core.keys import signature_hash_for
from otward.errors import ConfigError, OtwardError

__all__ = ["app"]

app = typer.Typer(
    help="Firmware: sign images (CMS manifests), verify them, simulate a staged secure boot.",
    no_args_is_help=True,
)

_DIGEST_HELP = "Image and signature digest: sha256 or sha384 [default: matched to the key]"


@app.command("sign")
@handle_errors
def sign(
    image: Annotated[Path, typer.Argument(help="The firmware image", show_default=False)],
    key: Annotated[Path, typer.Option("--key", help="Signer's private key (PEM)", show_default=False)],
    cert: Annotated[
        Path, typer.Option("--cert", help="Signer's certificate (PEM; codeSigning EKU)", show_default=False)
    ],
    version: Annotated[
        int,
        typer.Option("--version", min=0, max=MAX_VERSION, help="Anti-rollback version (integer counter)"),
    ],
    out: Annotated[Path, typer.Option("--out", help="Manifest to write (DER CMS)", show_default=False)],
    chain: Annotated[
        Path | None,
        typer.Option("--chain", help="Intermediate CA certificates to carry (PEM)", show_default=False),
    ] = None,
    stage: Annotated[str, typer.Option("--stage", help="Boot stage the image is for")] = "firmware",
    digest: Annotated[str | None, typer.Option("--digest", help=_DIGEST_HELP, show_default=False)] = None,
    rsa_padding: Annotated[
        str, typer.Option("--rsa-padding", help="RSA signature padding: pss or pkcs1v15")
    ] = "pss",
    next_stage_key: Annotated[
        Path | None,
        typer.Option(
            "--next-stage-key",
            help="Public key or certificate (PEM) of the next boot stage's signer, pinned in the manifest",
            show_default=False,
        ),
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option("--passphrase-file", help="File holding the key's passphrase", show_default=False),
    ] = None,
    force: ForceOption = False,
    audit_file: AuditFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sign IMAGE: write a CMS SignedData manifest (digest, size, version, stage, next stage's key pin)."""
    with _trail(audit_file) as record:
        try:
            summary = _sign(
                image,
                key,
                cert,
                version,
                out,
                chain,
                stage,
                digest,
                rsa_padding,
                next_stage_key,
                passphrase_file,
                force,
            )
        except OtwardError as exc:
            record(EventType.FIRMWARE_SIGNED, str(image), exc, {"manifest": str(out), "stage": stage})
            raise
        record(
            EventType.FIRMWARE_SIGNED,
            str(image),
            None,
            {k: str(v) for k, v in summary.items() if v is not None},
        )
    if as_json:
        print_json(summary)
        return
    console.print(f"signed [bold]{escape(str(image))}[/] → {escape(str(out))}", highlight=False)
    for label, value in list(summary.items())[1:]:
        console.print(f"  {label}: {escape(str(value if value is not None else '-'))}", highlight=False)


def _sign(
    image: Path,
    key: Path,
    cert: Path,
    version: int,
    out: Path,
    chain: Path | None,
    stage: str,
    digest: str | None,
    rsa_padding: str,
    next_stage_key: Path | None,
    passphrase_file: Path | None,
    force: bool,
) -> dict[str, object]:
    check_output(out, "--out", force=force)
    if rsa_padding not in ("pss", "pkcs1v15"):
        raise ConfigError(f"--rsa-padding {rsa_padding!r} must be pss or pkcs1v15", rule="rsa-padding")
    passphrase = None
    if passphrase_file is not None:
        passphrase = read_limited(passphrase_file, 4096, "passphrase file").rstrip(b"\r\n")
    private_key = load_signing_key(key, passphrase)
    certificates = load_certificates(cert, "certificate")
    signer, extra = certificates[0], certificates[1:]
    if chain is not None:
        extra += load_certificates(chain, "chain")
    validate_signing_key(signer.public_key())  # before hashing a large image with a refused key
    hash_name = digest or _default_digest(signer)
    hashlib_name = parse_digest_name(hash_name)
    pin = load_pin(next_stage_key, "next stage key") if next_stage_key is not None else None
    facts = measure_image(image, hashlib_name)
    manifest = Manifest(
        stage=stage,
        version=version,
        size=facts.size,
        digest_algorithm=f"sha-{hashlib_name[3:]}",
        digest=facts.digest,
        signed_at=now(),
        next_stage_key=pin,
    )
    padding_name: RsaPadding = "pss" if rsa_padding == "pss" else "pkcs1v15"
    envelope = sign_content(
        dump_manifest(manifest), signer, private_key, extra, hash_for_name(hashlib_name), padding_name
    )
    write_output(out, envelope)
    summary: dict[str, object] = {
        "manifest": str(out),
        "stage": manifest.stage,
        "version": manifest.version,
        "size": manifest.size,
        "digest": f"{manifest.digest_algorithm}:{manifest.digest.hex()}",
        "signer": signer.subject.rfc4514_string(),
        "signer_key_pin": key_pin(signer.public_key()),
        "next_stage_key": pin,
    }
    return summary


def _default_digest(signer: x509.Certificate) -> str:
    """SHA-384 for P-384 and RSA above 2048 bits, else SHA-256 (the pairing of RFC 5480 section 4)."""
    algorithm = signature_hash_for(signer.public_key())  # type: ignore[arg-type]  # checked by the caller
    return algorithm.name if algorithm is not None and algorithm.name == "sha384" else "sha256"


def _write_findings(out: Path, document: FindingsDocument) -> None:
    check_output(out, "--out", force=True)
    write_output(out, dump_findings(document).encode())


@app.command("verify")
@handle_errors
def verify(
    image: Annotated[Path, typer.Argument(help="The firmware image", show_default=False)],
    manifest: Annotated[Path, typer.Argument(help="Its signed manifest", show_default=False)],
    trust: Annotated[
        Path, typer.Option("--trust", help="Trust root certificate(s) (PEM)", show_default=False)
    ],
    min_version: Annotated[
        int | None,
        typer.Option(
            "--min-version", min=0, help="Refuse a version below this (anti-rollback)", show_default=False
        ),
    ] = None,
    out: OutOption = None,
    audit_file: AuditFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verify IMAGE against MANIFEST: signature, signer chain to --trust, digest, size, version.

    Exit 1 with the reason named when anything fails; --json prints a findings document."""
    target = str(image)
    with _trail(audit_file) as record:
        try:
            anchors = load_certificates(trust, "trust root")
            data = read_manifest(manifest)
            verified = verify_firmware(
                data, lambda name: measure_image(image, name), anchors, now(), min_version
            )
        except OtwardError as exc:
            record(EventType.FIRMWARE_VERIFIED, target, exc, {"manifest": str(manifest)})
            if not is_firmware_check(exc.rule):
                raise
            finding = finding_for(str(exc.rule), target, exc.message)
            failure: str | None = f"{exc.message} [{exc.rule}]"
        else:
            m = verified.manifest
            details = {"manifest": str(manifest), "stage": m.stage, "version": str(m.version)}
            details |= {"digest": f"{m.digest_algorithm}:{m.digest.hex()}", "signer": verified.signer_name}
            record(EventType.FIRMWARE_VERIFIED, target, None, details)
            finding = finding_for("firmware.verified", target, _evidence(verified))
            failure = None
    _finish(_document("firmware", target, finding), as_json, out, failure, None if failure else verified)


@app.command("boot-chain")
@handle_errors
def boot_chain(
    directory: Annotated[
        Path, typer.Argument(help="Boot-chain directory (boot-chain.toml)", show_default=False)
    ],
    commit_counters: Annotated[
        bool,
        typer.Option(
            "--commit-counters",
            help="After a successful boot, raise the stored counters to the booted versions",
        ),
    ] = False,
    out: OutOption = None,
    audit_file: AuditFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Simulate a staged secure boot: verify each stage with the key the previous stage pinned (the
    first with the ROM key), refuse tampered, unsigned, wrongly signed or downgraded stages, stop there."""
    with _trail(audit_file) as record:
        try:
            files = read_boot_chain(directory)
        except OtwardError as exc:
            record(EventType.FIRMWARE_BOOTED, str(directory), exc, {})
            raise
        outcome = boot(files.spec, files.rom_pin, files.counters, FileStageLoader(directory))
        committed: dict[str, int] | None = None
        if outcome.ok and commit_counters:
            committed = outcome.committed_counters()
            if committed != files.counters:
                write_counters(directory, files.spec, committed)
        booted = ",".join(f"{stage.name}:{v.manifest.version}" for stage, v in outcome.booted)
        details = {"booted": booted, "committed": "yes" if committed is not None else "no"}
        if outcome.failed is not None:
            details |= {"stage": outcome.failed.name, "check": outcome.check}
        record(EventType.FIRMWARE_BOOTED, str(directory), outcome.failure, details)
    finding = _boot_finding(str(directory), outcome)
    document = _document("firmware-boot", str(directory), finding)
    if as_json:
        emit_findings(document, as_json=True, out=out)
    _print_boot(outcome, committed, commit_counters)
    if out is not None:
        _write_findings(out, document)
    raise typer.Exit(0 if outcome.ok else 1)


AuditFileOption = Annotated[
    Path | None,
    typer.Option(
        "--audit-file",
        help="Append the event to this hash-chained audit trail file (otward audit verify --file)",
        show_default=False,
    ),
]


@contextlib.contextmanager
def _trail(
    path: Path | None,
) -> Iterator[Callable[[EventType, str, OtwardError | None, dict[str, str]], None]]:
    """A recorder of firmware events into the trail file at ``path`` (opened, and its chain checked,
    before the command does anything; nothing is recorded without a path)."""
    trail = FileAuditTrail(path) if path is not None else None
    host = socket.gethostname()
    actor = cli_actor()

    def record(type_: EventType, subject: str, failure: OtwardError | None, details: dict[str, str]) -> None:
        if trail is None:
            return
        if failure is not None and failure.rule:
            details = {**details, "rule": failure.rule}
        trail.append(
            AuditEvent(
                time=now(),
                host=host,
                component="firmware",
                type=type_,
                subject=subject,
                outcome=Outcome.SUCCESS if failure is None else Outcome.FAILURE,
                reason=failure.message if failure is not None else None,
                source=actor.source,
                details={"actor": actor.identity, **details},
            )
        )

    try:
        yield record
    finally:
        if trail is not None:
            trail.close()


def _boot_finding(directory: str, outcome: BootOutcome) -> Finding:
    if outcome.ok:
        evidence = "; ".join(
            f"{stage.name} version {v.manifest.version} signed by {v.signer_name} ({v.algorithm})"
            for stage, v in outcome.booted
        )
        return finding_for("firmware.boot.verified", directory, evidence)
    assert outcome.failed is not None  # noqa: S101 - not ok: both are set
    assert outcome.failure is not None  # noqa: S101
    not_run = ", ".join(s.name for s in outcome.not_run) or "none"
    evidence = f"stage {outcome.failed.name}: {outcome.failure.message}; boot stopped, not run: {not_run}"
    return finding_for(outcome.check, f"{directory}:{outcome.failed.name}", evidence)


def _print_boot(outcome: BootOutcome, committed: dict[str, int] | None, asked: bool) -> None:
    for stage, verified in outcome.booted:
        console.print(
            f"[green]ok[/]   {escape(stage.name)}: version {verified.manifest.version}, signed by "
            f"{escape(verified.signer_name)} ({escape(verified.algorithm)})",
            highlight=False,
        )
    if outcome.failed is not None and outcome.failure is not None:
        err_console.print(
            f"[bold red]FAIL[/] {escape(outcome.failed.name)}: {escape(outcome.failure.message)} "
            + escape(f"[{outcome.check}]"),
            highlight=False,
        )
        for stage in outcome.not_run:
            console.print(f"[dim]skip[/] {escape(stage.name)}: not run (boot stopped)", highlight=False)
        if asked:
            console.print("counters not committed: the boot failed", highlight=False)
        return
    console.print("boot chain verified", highlight=False)
    if committed is not None:
        console.print(
            "counters: " + ", ".join(f"{escape(n)}={v}" for n, v in sorted(committed.items())),
            highlight=False,
        )


def _document(kind: str, target: str, finding: Finding) -> FindingsDocument:
    return FindingsDocument(kind, now(), tool_name(), (target,), (finding,))


def _evidence(verified: Verified) -> str:
    m = verified.manifest
    path = " → ".join(c.subject.rfc4514_string() for c in verified.path)
    return (
        f"stage {m.stage} version {m.version}, {m.size} bytes, {m.digest_algorithm} {m.digest.hex()}; "
        f"signed {m.signed_at.isoformat()} by {verified.signer_name} ({verified.algorithm}); path {path}"
    )


def _finish(
    document: FindingsDocument,
    as_json: bool,
    out: Path | None,
    failure: str | None,
    verified: Verified | None = None,
) -> None:
    if as_json:
        emit_findings(document, as_json=True, out=out)
    if out is not None:
        _write_findings(out, document)
    if failure is not None:
        err_console.print(f"[bold red]rejected:[/] {escape(failure)}", highlight=False)
        raise typer.Exit(1)
    assert verified is not None  # noqa: S101
    m = verified.manifest
    console.print(
        f"[green]verified[/] {escape(document.targets[0])}: stage {escape(m.stage)} version {m.version}, "
        f"signed by {escape(verified.signer_name)} ({escape(verified.algorithm)})",
        highlight=False,
    )

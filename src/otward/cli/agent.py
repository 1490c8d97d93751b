"""``otward agent enroll|renew|attest|run|status``: the device side of onboarding."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from otward.agent.agent import Agent
from otward.agent.client import redacted_proxy
from otward.agent.schedule import renewal_due
from otward.agent.state import DEFAULT_STORE, AgentState, AgentStore, KeyBackend, Pkcs11Settings
from otward.cli.common import JsonOption, console, handle_errors, print_json
from otward.core.durations import parse_duration

app = typer.Typer(
    help="Device agent: enroll (token or factory identity), renew before expiry, attest, run as a service.",
    no_args_is_help=True,
)

StoreOption = Annotated[
    Path, typer.Option("--store", help="Agent store directory (state, CA and certificate; mode 0700)")
]


def _summary(state: AgentState, store: AgentStore) -> dict[str, Any]:
    certificate = state.certificate
    return {
        "device_id": state.device_id,
        "server": state.server_url,
        "proxy": redacted_proxy(state.proxy),
        "serial": f"{certificate.serial_number:x}",
        "not_before": certificate.not_valid_before_utc,
        "not_after": certificate.not_valid_after_utc,
        "renewal_due": renewal_due(certificate.not_valid_before_utc, certificate.not_valid_after_utc, 0.5),
        "key_backend": state.backend.value,
        "key_label": state.key_label,
        "certificate": str(store.cert_path),
        "chain": str(store.chain_path),
    }


def _print(info: dict[str, Any], headline: str, as_json: bool) -> None:
    if as_json:
        print_json(info)
        return
    console.print(headline, highlight=False)
    for key, value in info.items():
        console.print(f"  {key.replace('_', ' ')}: {'none' if value is None else value}", highlight=False)


@app.command("enroll")
@handle_errors
def enroll(
    server: Annotated[str, typer.Option("--server", help="Server base URL, e.g. https://pki.plant:8443")],
    device_id: Annotated[str, typer.Option("--device-id", help="Device id: the certificate's CN")],
    pin: Annotated[str, typer.Option("--pin", help="sha256/BASE64 pin of the server (otward ca pin root)")],
    store: StoreOption = DEFAULT_STORE,
    ca: Annotated[
        str | None,
        typer.Option("--ca", help="EST CA label (/.well-known/est/<ca>); the server's default if omitted"),
    ] = None,
    pkcs11_module: Annotated[
        Path | None, typer.Option("--pkcs11-module", help="PKCS#11 module (.so); keys then stay in the token")
    ] = None,
    pkcs11_token: Annotated[str | None, typer.Option("--pkcs11-token", help="PKCS#11 token label")] = None,
    pkcs11_pin_file: Annotated[
        Path | None, typer.Option("--pkcs11-pin-file", help="File holding the token's user PIN")
    ] = None,
    proxy: Annotated[
        str | None,
        typer.Option(
            "--proxy",
            help="HTTP proxy to reach the server through (http://host:port; CONNECT, TLS and the pin end"
            " to end), kept for renewals. The environment's proxy variables are never used",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="OTWARD_ENROLL_TOKEN",
            help="Enrollment token (prefer the environment variable: it does not show in ps)",
            show_default=False,
        ),
    ] = None,
    idevid_module: Annotated[
        Path | None,
        typer.Option(
            "--idevid-pkcs11-module", help="PKCS#11 module of the chip holding the factory identity"
        ),
    ] = None,
    idevid_token: Annotated[
        str | None, typer.Option("--idevid-token", help="Token label of the factory identity (IDevID)")
    ] = None,
    idevid_key_label: Annotated[
        str | None,
        typer.Option("--idevid-key-label", help="Label of the IDevID's key and certificate on that token"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Pin the server, make a key, enroll it with the token (or, for a device its owner claimed, with
    its factory identity from its PKCS#11 chip: --idevid-*) and store the certificate."""
    if idevid_module is not None or idevid_token is not None or idevid_key_label is not None:
        if idevid_module is None or idevid_token is None or idevid_key_label is None:
            raise typer.BadParameter(
                "--idevid-pkcs11-module, --idevid-token and --idevid-key-label go together",
                param_hint="--idevid-*",
            )
        if pkcs11_pin_file is None or (pkcs11_module or idevid_module) != idevid_module:
            raise typer.BadParameter(
                "the new key is made on the IDevID's token: give --pkcs11-pin-file (and no other module)",
                param_hint="--pkcs11-*",
            )
        if pkcs11_token not in (None, idevid_token):
            raise typer.BadParameter("the new key is made on the IDevID's token", param_hint="--pkcs11-token")
        pkcs11_module, pkcs11_token = idevid_module, idevid_token
    if (token is None) == (idevid_key_label is None):
        raise typer.BadParameter("give --token or the --idevid-* options", param_hint="--token")
    pkcs11_options = (pkcs11_module, pkcs11_token, pkcs11_pin_file)
    pkcs11: Pkcs11Settings | None = None
    if any(o is not None for o in pkcs11_options):
        if pkcs11_module is None or pkcs11_token is None or pkcs11_pin_file is None:
            raise typer.BadParameter(
                "--pkcs11-module, --pkcs11-token and --pkcs11-pin-file go together", param_hint="--pkcs11-*"
            )
        pkcs11 = Pkcs11Settings(pkcs11_module.absolute(), pkcs11_token, pkcs11_pin_file.resolve())
    agent_store = AgentStore(store)
    with Agent.enroll(
        agent_store,
        server=server,
        token=token,
        device_id=device_id,
        pin=pin,
        pkcs11=pkcs11,
        ca_label=ca,
        proxy=proxy,
        idevid_key_label=idevid_key_label,
    ) as agent:
        state = agent.state
    _print(_summary(state, agent_store), f"enrolled [bold]{state.device_id}[/] in {store}", as_json)


@app.command("renew")
@handle_errors
def renew(store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False) -> None:
    """Renew now with a new key (TLS client authentication, or a signed challenge for PKCS#11 or expiry)."""
    with Agent.open(store) as agent:
        state = agent.renew()
    _print(_summary(state, agent.store), f"renewed [bold]{state.device_id}[/]", as_json)


@app.command("attest")
@handle_errors
def attest(store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False) -> None:
    """Sign a fresh server challenge with the device key (shows the device alive in the registry)."""
    with Agent.open(store) as agent:
        result = agent.attest()
    info = {"device_id": result.device_id, "result": result.result, "serial": result.serial}
    _print(info, f"attestation of [bold]{result.device_id}[/] {result.result}", as_json)


@app.command("run")
@handle_errors
def run(
    store: StoreOption = DEFAULT_STORE,
    attest_interval: Annotated[
        str, typer.Option("--attest-interval", help="How often to attest, e.g. 15m, 1h")
    ] = "15m",
) -> None:
    """Stay running: renew when due (backing off on failure) and attest periodically; stop on SIGTERM."""
    interval = parse_duration(attest_interval)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with Agent.open(store) as agent:
        agent.run(stop, attest_interval=interval)


@app.command("status")
@handle_errors
def status(store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False) -> None:
    """Show the device id, certificate, renewal time (without jitter) and key backend; no network."""
    agent_store = AgentStore(store)
    state = agent_store.load()
    info = _summary(state, agent_store)
    if state.backend is KeyBackend.PKCS11 and state.pkcs11 is not None:
        info["pkcs11_token"] = state.pkcs11.token_label
    _print(info, f"agent [bold]{state.device_id}[/] in {store}", as_json)

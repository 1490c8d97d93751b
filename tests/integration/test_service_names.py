"""The service's own names: ``--name`` at init and first-run serve, ``[server] names`` in config.toml,
a reissued certificate when they change, and renewal that keeps them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from typer.testing import CliRunner

from otward.cli.app import app
from otward.config import load_settings
from otward.services.bootstrap import TlsFiles, initialize, renew_service_certificate_if_due
from otward.services.pki import Pki
from tests.conftest import Clock, RunningServer, free_port, start_server, stop_server

pytestmark = pytest.mark.integration

runner = CliRunner()
NAME = "pki.plant.example"


def run(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


@pytest.fixture
def clock() -> Clock:
    return Clock()


def openssl_san(certificate_file: Path) -> str:
    """What ``openssl x509 -noout -ext subjectAltName`` says of the leaf in ``certificate_file``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    result = subprocess.run(
        [openssl, "x509", "-in", str(certificate_file), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout


def curl_by_name(server: RunningServer, name: str) -> subprocess.CompletedProcess[str]:
    """``curl https://NAME:PORT/healthz`` with NAME resolved to 127.0.0.1, trusting only root.pem."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    port = server.https_url.rsplit(":", 1)[1]
    return subprocess.run(
        [
            curl,
            "--silent",
            "--show-error",
            "--fail",
            "--resolve",
            f"{name}:{port}:127.0.0.1",
            "--cacert",
            str(server.root_pem),
            f"https://{name}:{port}/healthz",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def leaf(data_dir: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(TlsFiles.in_dir(data_dir).certificate_chain.read_bytes())[0]


def test_init_names_go_into_the_certificate_and_config_toml(tmp_path):
    data = tmp_path / "d"
    info = json.loads(
        run("init", "--data", str(data), "--name", "PKI.Plant.Example", "--name", "10.1.2.3", "--json")
    )
    assert info["service_names"] == [NAME, "10.1.2.3", "localhost", "127.0.0.1"]
    san = openssl_san(data / "tls" / "server.pem")
    for entry in (f"DNS:{NAME}", "IP Address:10.1.2.3", "DNS:localhost", "IP Address:127.0.0.1"):
        assert entry in san
    settings = load_settings(data)
    assert settings.server.names == (NAME, "10.1.2.3", "localhost", "127.0.0.1")
    # CRL and OCSP links point at the name devices reach the service by
    assert settings.public_url == f"http://{NAME}:8080"
    assert leaf(data).subject.rfc4514_string() == f"CN={NAME},O=otward"


@pytest.mark.parametrize(
    "name",
    [
        "bad name",
        "*.plant.example",
        "-pki.plant.example",
        "pki.plant.example.",
        "pki_1.example",
        "10.0.0.0/8",
        "",
    ],
)
def test_init_refuses_a_name_that_is_no_host_name_or_address_and_creates_nothing(tmp_path, name):
    output = run("init", "--data", str(tmp_path / "d"), "--name", name, code=1)
    assert "is not a DNS host name or an IP address [service-name]" in " ".join(output.split())
    assert not (tmp_path / "d").exists()


def test_a_bad_name_in_config_toml_names_the_key(tmp_path):
    data = tmp_path / "d"
    initialize(data)
    config = data / "config.toml"
    config.write_text(config.read_text().replace('names = ["localhost"', 'names = ["not a name"'))
    output = " ".join(run("ca", "list", "--data", str(data), code=1).split())
    assert "config.toml: server.names:" in output
    assert "'not a name' is not a DNS host name or an IP address" in output


@pytest.mark.interop
def test_a_client_reaches_the_service_by_its_name_and_a_changed_name_reissues(tmp_path):
    data = tmp_path / "served"
    initialize(
        data,
        organization="ACME Chemicals",
        public_url=f"http://127.0.0.1:{free_port()}",
        server_names=(NAME, "localhost", "127.0.0.1"),
    )
    server = start_server(data)
    try:
        answer = curl_by_name(server, NAME)
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout)["status"] == "ok"
        refused = curl_by_name(server, "other.plant.example")
        assert refused.returncode != 0  # not a name of the certificate
    finally:
        stop_server(server)
    first = leaf(data)

    server = start_server(data)  # unchanged names: the same certificate
    stop_server(server)
    assert leaf(data).serial_number == first.serial_number

    config = data / "config.toml"
    config.write_text(
        config.read_text().replace(f'names = ["{NAME}"', f'names = ["pki2.plant.example", "{NAME}"')
    )
    server = start_server(data)
    try:
        assert (
            "the service's TLS certificate was reissued: its names changed to pki2.plant.example"
            in (data / "serve.log").read_text()
        )
        answer = curl_by_name(server, "pki2.plant.example")
        assert answer.returncode == 0, answer.stderr
    finally:
        stop_server(server)
    reissued = leaf(data)
    assert reissued.serial_number != first.serial_number
    assert reissued.public_key() != first.public_key()
    assert "DNS:pki2.plant.example" in openssl_san(data / "tls" / "server.pem")


def test_renewal_keeps_the_configured_names(tmp_path, clock):
    data = tmp_path / "d"
    initialize(data, organization="ACME Chemicals", server_names=(NAME, "10.1.2.3", "localhost"))
    before = leaf(data)
    pki = Pki.open(load_settings(data), clock=clock)
    try:
        assert renew_service_certificate_if_due(pki, data) is None
        clock.advance(timedelta(days=250))  # past 2/3 of the certificate's year
        assert renew_service_certificate_if_due(pki, data) == "two thirds of its lifetime passed"
    finally:
        pki.close()
    after = leaf(data)
    assert after.serial_number != before.serial_number
    assert after.subject == before.subject
    san = openssl_san(data / "tls" / "server.pem")
    assert (f"DNS:{NAME}", "DNS:localhost", "IP Address:10.1.2.3") == tuple(
        entry for entry in (f"DNS:{NAME}", "DNS:localhost", "IP Address:10.1.2.3") if entry in san
    )
    assert "127.0.0.1" not in san  # the names configured, not the defaults


def _serve(data: Path, *args: str) -> RunningServer:
    """``otward serve`` as its own process on free ports, first run included (so not conftest's
    start_server, which initialises the directory itself)."""
    https_port, http_port = free_port(), free_port()
    command = [sys.executable, "-m", "otward", "serve", "--data", str(data), "--port", str(https_port)]
    command += ["--http-port", str(http_port), *args]
    log = (data.parent / f"serve-{https_port}.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = RunningServer(
        data, f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}", "", process, log
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.close()
            return server
        if server.root_pem.exists():
            try:
                with httpx.Client(verify=server.ssl_context(), timeout=1) as client:
                    if client.get(f"{server.https_url}/healthz").status_code == 200:
                        return server
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError("otward serve did not become ready within 60 s")


def _console(server: RunningServer) -> str:
    return " ".join(Path(server.log.name).read_text().split())


@pytest.mark.interop
def test_first_run_serve_takes_org_key_type_and_name_and_says_what_it_created(tmp_path):
    data = tmp_path / "plant"
    options = ("--org", "Plant A", "--key-type", "ec-p384", "--name", NAME)
    server = _serve(data, *options)
    try:
        assert server.process.poll() is None, _console(server)
        console = _console(server)
        assert f"initialised {data}" in console
        assert "root CA: CN=Plant A Root CA,O=Plant A (ec-p384, valid until" in console
        assert "issuing CA: CN=Plant A issuing CA,O=Plant A (ec-p384, valid until" in console
        assert f"service TLS certificate for: {NAME}, localhost, 127.0.0.1" in console
        assert f"root certificate (clients trust this): {data}/root.pem" in console
        assert "defaults used" not in console
        answer = curl_by_name(server, NAME)
        assert answer.returncode == 0, answer.stderr
    finally:
        stop_server(server)
    root = x509.load_pem_x509_certificate((data / "root.pem").read_bytes())
    assert root.public_key().curve.name == "secp384r1"  # type: ignore[union-attr]
    assert root.subject.rfc4514_string() == "CN=Plant A Root CA,O=Plant A"

    # the same options again (a service unit passes them every time): accepted
    server = _serve(data, *options)
    try:
        assert server.process.poll() is None, _console(server)
        assert "initialised" not in _console(server)
    finally:
        stop_server(server)
    # options that contradict the installation: refused, nothing changed
    for args, says in (
        (("--org", "Plant B"), "--org 'Plant B': "),
        (("--key-type", "ec-p256"), "--key-type ec-p256: the CAs of"),
        (("--name", "pki2.plant.example"), "--name: "),
    ):
        server = _serve(data, *args)
        assert server.process.wait(timeout=30) == 1
        assert says in _console(server)
        assert "[first-run-option]" in _console(server)
    assert x509.load_pem_x509_certificate((data / "root.pem").read_bytes()) == root


def test_first_run_serve_without_options_says_which_defaults_it_used(tmp_path):
    data = tmp_path / "plain"
    server = _serve(data)
    try:
        assert server.process.poll() is None, _console(server)
        console = _console(server)
        assert "root CA: CN=otward Root CA,O=otward (ec-p256, valid until" in console
        assert (
            "defaults used: --org otward, --key-type ec-p256, --name localhost --name 127.0.0.1; to choose "
            f"others, stop now, remove {data} and run serve (or init) again with them"
        ) in console
    finally:
        stop_server(server)

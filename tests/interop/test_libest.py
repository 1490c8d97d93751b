"""Cisco libest's stock ``estclient`` (the RFC 7030 reference client many devices embed) against a
real ``otward serve``; every result is checked with ``openssl``.

libest is built from source by ``shared/tools/libest/build`` (found in a parent directory of the
checkout, or at ``$OTWARD_LIBEST_BUILD``), unmodified but for an OpenSSL 3 compile fix, and cached
under ``${XDG_CACHE_HOME:-~/.cache}/otward-test-tools/``: the first run builds it (about 15 s on
two cores), later runs reuse it. ``scripts/install-test-deps`` installs what the build needs.

``estclient`` exits 0 whether or not an operation worked; it says ``... failed with code N`` and
writes no output file when one fails, which is what these tests look at.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from otward.http.limits import MAX_FAILURES
from tests.conftest import RunningServer
from tests.interop.helpers import need, otward_cli, run, write

pytestmark = [pytest.mark.interop, pytest.mark.integration]

BUILD_SCRIPT = Path("shared/tools/libest/build")
# What the build script needs (it installs them itself with apt-get when it runs as root).
BUILD_PACKAGES = (
    "autoconf",
    "automake",
    "libtool",
    "build-essential",
    "pkg-config",
    "libssl-dev",
    "liburiparser-dev",
)
BUILD_TIMEOUT = 900.0
CLIENT_TIMEOUT = 120.0


@dataclass(frozen=True)
class EstClient:
    """The built ``estclient`` and how to run it against a server."""

    binary: Path

    def run(self, server: RunningServer, out: Path, *args: str | Path, check: bool = True) -> str:
        """``estclient -s HOST -p PORT -o OUT ARGS``, trusting only the installation's root; returns
        its output. With ``check``, an operation that failed fails the test."""
        out.mkdir(parents=True, exist_ok=True)
        address = urlsplit(server.https_url)
        command = [
            str(self.binary),
            "-s",
            str(address.hostname),
            "-p",
            str(address.port),
            "-o",
            str(out),
            *(str(a) for a in args),
        ]
        env = {
            **os.environ,
            "LD_LIBRARY_PATH": str(self.binary.parent.parent / "lib"),
            "EST_OPENSSL_CACERT": str(server.root_pem),
        }
        proc = subprocess.run(
            command,
            env=env,
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            timeout=CLIENT_TIMEOUT,
            check=False,
        )
        output = proc.stdout + proc.stderr
        if check and (proc.returncode != 0 or "failed with code" in output):
            pytest.fail(f"{' '.join(command)} exited {proc.returncode}\n{output}")
        return output


def _build_script() -> Path | None:
    configured = os.environ.get("OTWARD_LIBEST_BUILD")
    if configured:
        return Path(configured)
    for directory in Path(__file__).resolve().parents:
        if (directory / BUILD_SCRIPT).is_file():
            return directory / BUILD_SCRIPT
    return None


def _missing_packages() -> list[str]:
    return [
        package
        for package in BUILD_PACKAGES
        if subprocess.run(["dpkg", "-s", package], capture_output=True, check=False).returncode != 0
    ]


@pytest.fixture(scope="session")
def estclient() -> EstClient:
    """libest's ``estclient``, built once and cached; skipped only when it cannot be built here."""
    script = _build_script()
    if script is None:
        pytest.skip(f"libest's build script ({BUILD_SCRIPT}) is not in a parent directory of the checkout")
    if shutil.which("dpkg") is None:
        pytest.skip("libest's build script installs its build tools with dpkg/apt-get (Debian, Ubuntu)")
    missing = _missing_packages()
    if missing and os.geteuid() != 0:
        pytest.skip(f"libest build tools missing: {' '.join(missing)} (scripts/install-test-deps)")
    proc = subprocess.run(
        [str(script)], capture_output=True, encoding="utf-8", timeout=BUILD_TIMEOUT, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"{script} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return EstClient(Path(proc.stdout.strip().splitlines()[-1]))


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _owner(server: RunningServer, *options: str) -> str:
    name = _name("plant")
    otward_cli(server.data_dir, "owner", "create", name, *options)
    return name


def _token(server: RunningServer, owner: str, *options: str) -> str:
    out = otward_cli(server.data_dir, "token", "create", "--owner", owner, "--json", *options).stdout
    return str(json.loads(out)["token"])


def _ec_key(path: Path) -> Path:
    run([need("openssl"), "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path])
    return path


def _rsa_key(path: Path, bits: int = 2048) -> Path:
    run(
        [need("openssl"), "genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{bits}", "-out", path]
    )
    return path


def _certificates(p7_b64: Path, out: Path) -> Path:
    """The certificates of estclient's output (base64 PKCS#7) as PEM, by openssl."""
    der = out.with_suffix(".p7")
    run(["openssl", "base64", "-d", "-in", p7_b64, "-out", der])
    run(["openssl", "pkcs7", "-inform", "DER", "-in", der, "-print_certs", "-out", out])
    return out


def _chain(server: RunningServer, ca: str, directory: Path) -> Path:
    """``otward ca export CA``: the CA's certificate, then the root."""
    return write(directory / f"{ca}-chain.pem", otward_cli(server.data_dir, "ca", "export", ca).stdout)


def _certificates_of(chain: Path, directory: Path) -> Path:
    """A PEM chain through ``openssl pkcs7 -print_certs``, so its subjects read as in estclient's output."""
    out = directory / "chain-subjects.pem"
    p7 = directory / "chain.p7"
    run(["openssl", "crl2pkcs7", "-nocrl", "-certfile", chain, "-outform", "DER", "-out", p7])
    run(["openssl", "pkcs7", "-inform", "DER", "-in", p7, "-print_certs", "-out", out])
    return out


def _verify(server: RunningServer, cert: Path, chain: Path) -> None:
    out = run(
        ["openssl", "verify", "-CAfile", server.root_pem, "-untrusted", chain, "-purpose", "sslclient", cert]
    )
    assert f"{cert}: OK" in out.stdout


def _field(cert: Path, *options: str) -> str:
    return run(["openssl", "x509", "-in", cert, "-noout", *options]).stdout


def _public_key(key: Path, *, der: bool = False) -> str:
    return run(["openssl", "pkey", "-in", key, *(["-inform", "DER"] if der else []), "-pubout"]).stdout


def _subjects(pem: Path) -> list[str]:
    text = pem.read_text()
    return [line.split("=", 1)[1].strip() for line in text.splitlines() if line.startswith("subject=")]


def _enroll(
    estclient: EstClient,
    server: RunningServer,
    out: Path,
    token: str,
    device: str,
    key: Path,
    *extra: str,
) -> Path:
    """``estclient -e -u dev -h TOKEN``: the certificate as PEM."""
    estclient.run(server, out, "-e", "-u", "dev", "-h", token, "-x", key, "--common-name", device, *extra)
    return _certificates(out / "cert-0-0.pkcs7", out / "cert.pem")


def test_cacerts_is_the_issuing_chain(interop_server, estclient, tmp_path):
    estclient.run(interop_server, tmp_path, "-g")
    pem = _certificates(tmp_path / "cacert-0-0.pkcs7", tmp_path / "cacerts.pem")
    chain = _certificates_of(_chain(interop_server, "issuing", tmp_path), tmp_path)
    assert sorted(_subjects(pem)) == sorted(_subjects(chain))
    assert len(_subjects(pem)) == 2


def test_csrattrs_asks_for_ecdsa_with_sha256_on_p256(interop_server, estclient, tmp_path):
    estclient.run(interop_server, tmp_path, "-a")
    run(["openssl", "base64", "-d", "-in", tmp_path / "csr-0-0.base64", "-out", tmp_path / "attrs.der"])
    parsed = run(["openssl", "asn1parse", "-inform", "DER", "-in", tmp_path / "attrs.der"]).stdout
    assert "ecdsa-with-SHA256" in parsed
    assert "id-ecPublicKey" in parsed
    assert "prime256v1" in parsed


def test_simpleenroll_with_http_basic(interop_server, estclient, tmp_path):
    """libest asks without credentials first, takes the Basic challenge and sends ``dev:TOKEN``."""
    owner = _owner(interop_server)
    token = _token(interop_server, owner)
    device = _name("plc")
    key = _ec_key(tmp_path / "device.key")
    cert = _enroll(estclient, interop_server, tmp_path / "out", token, device, key)
    _verify(interop_server, cert, _chain(interop_server, "issuing", tmp_path))
    assert f"CN={device}" in _field(cert, "-subject").replace(" = ", "=")
    assert f"URI:urn:otward:device:{owner}:{device}" in _field(cert, "-ext", "subjectAltName")
    assert _field(cert, "-pubkey") == _public_key(key)
    shown = json.loads(otward_cli(interop_server.data_dir, "device", "show", device, "--json").stdout)
    assert (shown["owner"], shown["status"]) == (owner, "active")


def test_path_segment_for_an_owner_with_its_own_ca(interop_server, estclient, tmp_path):
    """``--path-seg CA``: /.well-known/est/CA/cacerts and /.well-known/est/CA/simpleenroll."""
    ca = _name("line")
    otward_cli(interop_server.data_dir, "ca", "create", ca, "--parent", "root")
    owner = _owner(interop_server, "--ca", ca)
    token = _token(interop_server, owner)
    chain = _chain(interop_server, ca, tmp_path)

    estclient.run(interop_server, tmp_path / "g", "-g", "--path-seg", ca)
    cacerts = _certificates(tmp_path / "g" / "cacert-0-0.pkcs7", tmp_path / "cacerts.pem")
    assert sorted(_subjects(cacerts)) == sorted(_subjects(_certificates_of(chain, tmp_path)))

    device = _name("plc")
    key = _ec_key(tmp_path / "device.key")
    cert = _enroll(estclient, interop_server, tmp_path / "e", token, device, key, "--path-seg", ca)
    _verify(interop_server, cert, chain)
    assert f"{ca} CA" in _field(cert, "-issuer")


def test_simplereenroll_with_the_enrolled_certificate(interop_server, estclient, tmp_path):
    """``-r -c CERT -k KEY``: the CSR keeps the certificate's subject and SAN (RFC 7030 section 4.2.2),
    the TLS handshake carries the certificate."""
    owner = _owner(interop_server)
    token = _token(interop_server, owner)
    device = _name("plc")
    key = _ec_key(tmp_path / "device.key")
    first = _enroll(estclient, interop_server, tmp_path / "e", token, device, key)

    estclient.run(interop_server, tmp_path / "r", "-r", "-c", first, "-k", key)
    second = _certificates(tmp_path / "r" / "cert-0-0.pkcs7", tmp_path / "renewed.pem")
    _verify(interop_server, second, _chain(interop_server, "issuing", tmp_path))
    assert _field(second, "-subject") == _field(first, "-subject")
    assert _field(second, "-ext", "subjectAltName") == _field(first, "-ext", "subjectAltName")
    assert _field(second, "-serial") != _field(first, "-serial")
    shown = json.loads(otward_cli(interop_server.data_dir, "device", "show", device, "--json").stdout)
    assert shown["current_serial"] == _field(second, "-serial").strip().split("=")[1].lower().lstrip("0")


def test_serverkeygen_makes_a_key_of_the_csrs_type_libest_can_read(interop_server, estclient, tmp_path):
    """libest parses only RSA keys: the server makes one of the CSR's type and size (RSA-2048 here)."""
    owner = _owner(interop_server, "--allow-server-keygen")
    token = _token(interop_server, owner)
    device = _name("meter")
    csr_key = _rsa_key(tmp_path / "csr.key")
    out = tmp_path / "out"
    estclient.run(interop_server, out, "-q", "-u", "dev", "-h", token, "-x", csr_key, "--common-name", device)
    run(["openssl", "base64", "-d", "-in", out / "key-0-0.key", "-out", tmp_path / "made.der"])
    described = run(["openssl", "pkey", "-inform", "DER", "-in", tmp_path / "made.der", "-noout", "-text"])
    assert "Private-Key: (2048 bit" in described.stdout
    cert = _certificates(out / "cert-0-0.pkcs7", tmp_path / "cert.pem")
    made = _public_key(tmp_path / "made.der", der=True)
    assert _field(cert, "-pubkey") == made
    assert made != _public_key(csr_key)  # the server made the key; the CSR's only said which kind
    assert f"CN={device}" in _field(cert, "-subject").replace(" = ", "=")
    _verify(interop_server, cert, _chain(interop_server, "issuing", tmp_path))


def test_a_refusal_reaches_the_device_log_as_one_line(interop_server, estclient, tmp_path):
    """libest does not handle 403 but prints the answer: its body says what was wrong and which rule."""
    owner = _owner(interop_server)
    token = _token(interop_server, owner, "--device-id-pattern", "sensor-*")
    device = _name("plc")
    key = _ec_key(tmp_path / "device.key")
    output = estclient.run(
        interop_server,
        tmp_path / "out",
        *("-e", "-u", "dev", "-h", token, "-x", key, "--common-name", device),
        check=False,
    )
    assert "failed with code" in output
    assert (
        f"\ndevice id '{device}' does not match the token's pattern 'sensor-*' (rule enroll-token-pattern)\n"
        in output
    )
    assert not (tmp_path / "out" / "cert-0-0.pkcs7").exists()


def test_one_address_enrolls_more_devices_a_minute_than_the_failure_limit(server, estclient, tmp_path):
    """Each libest enrollment starts with a request without credentials (the challenge); those are
    not failed attempts, so a line of devices behind one address is not held off with 429."""
    owner = _owner(server)
    count = MAX_FAILURES + 2
    token = _token(server, owner, "--uses", str(count))
    key = _ec_key(tmp_path / "device.key")
    for i in range(count):
        _enroll(estclient, server, tmp_path / f"out-{i}", token, _name("plc"), key)

"""An issuing CA under a root otward does not hold, proved with tools nobody here wrote.

Two roots: one made and operated by ``openssl req -x509`` / ``openssl ca`` (the company's offline
root), and one held by a second otward installation that signs with ``otward ca sign-csr``. In
both, the issuing installation starts with ``otward init --external-root``, imports the signed
certificate, serves, and a device enrolls over EST with curl; ``openssl verify`` accepts the chain
to the external root and ``openssl ocsp`` gets a verified answer from the imported CA's responder.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from otward.config import load_settings
from otward.services.pki import Pki
from tests.conftest import RunningServer, build_csr, free_port, make_key, start_server, stop_server
from tests.interop.helpers import need, run, write

pytestmark = [pytest.mark.interop, pytest.mark.integration]

_CA_CONFIG = """\
[ ca ]
default_ca = offline_root

[ offline_root ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/root.pem
private_key = $dir/root.key
serial = $dir/serial
default_md = sha256
default_days = 1825
policy = anything
copy_extensions = copy
x509_extensions = sub_ca
unique_subject = no

[ anything ]
organizationName = optional
commonName = supplied

[ sub_ca ]
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def otward(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "otward", *args, "--data", str(data_dir)], check=check)


def openssl_root(directory: Path) -> Path:
    """A root CA the way a company's PKI team makes one: openssl req -x509, operated by openssl ca."""
    directory.mkdir()
    run(
        [
            need("openssl"),
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-nodes",
            "-keyout",
            directory / "root.key",
            "-out",
            directory / "root.pem",
            "-subj",
            "/O=ACME Corp/CN=ACME Offline Root",
            "-days",
            "7300",
            "-sha384",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]
    )
    (directory / "newcerts").mkdir()
    write(directory / "index.txt", "")
    write(directory / "serial", "1000\n")
    write(directory / "ca.cnf", _CA_CONFIG.format(dir=directory))
    return directory


def openssl_ca_sign(root: Path, csr: Path, out: Path) -> Path:
    run(["openssl", "ca", "-batch", "-notext", "-config", root / "ca.cnf", "-in", csr, "-out", out])
    return out


def init_external(data_dir: Path, root_pem: Path) -> int:
    """``otward init --external-root`` with a public URL on a free port; returns that port."""
    port = free_port()
    out = otward(
        data_dir,
        "init",
        "--org",
        "ACME Plant 7",
        "--external-root",
        str(root_pem),
        "--public-url",
        f"http://127.0.0.1:{port}",
        "--json",
    )
    assert json.loads(out.stdout)["issuing_csr"] == str(data_dir / "issuing.csr")
    return port


def enroll_and_check(server: RunningServer, tmp_path: Path, root_pem: Path) -> Path:
    """EST enrollment with openssl + curl, then openssl verify and openssl ocsp against the server."""
    otward(server.data_dir, "owner", "create", "line-1")
    token = json.loads(otward(server.data_dir, "token", "create", "--owner", "line-1", "--json").stdout)[
        "token"
    ]
    key, der, b64 = tmp_path / "plc.key", tmp_path / "plc.der", tmp_path / "plc.b64"
    run(
        [
            "openssl",
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            key,
            "-subj",
            "/CN=plc-1",
            "-outform",
            "DER",
            "-out",
            der,
        ]
    )
    run(["openssl", "base64", "-in", der, "-out", b64])
    answer = tmp_path / "plc.p7.b64"
    status = run(
        [
            need("curl"),
            "-sS",
            "--cacert",
            root_pem,
            "-o",
            answer,
            "-w",
            "%{http_code}",
            "-u",
            f"dev:{token}",
            "--data-binary",
            f"@{b64}",
            "-H",
            "Content-Type: application/pkcs10",
            f"{server.https_url}/.well-known/est/simpleenroll",
        ]
    ).stdout
    assert status == "200", answer.read_text()
    run(["openssl", "base64", "-d", "-in", answer, "-out", tmp_path / "plc.p7"])
    leaf = tmp_path / "plc.pem"
    run(["openssl", "pkcs7", "-inform", "DER", "-in", tmp_path / "plc.p7", "-print_certs", "-out", leaf])
    # /cacerts: the imported issuing CA and the external root
    cacerts = tmp_path / "cacerts.b64"
    run(["curl", "-sS", "--cacert", root_pem, "-o", cacerts, f"{server.https_url}/.well-known/est/cacerts"])
    run(["openssl", "base64", "-d", "-in", cacerts, "-out", tmp_path / "cacerts.p7"])
    chain = tmp_path / "cacerts.pem"
    run(["openssl", "pkcs7", "-inform", "DER", "-in", tmp_path / "cacerts.p7", "-print_certs", "-out", chain])
    assert chain.read_text().count("BEGIN CERTIFICATE") == 2
    verified = run(
        ["openssl", "verify", "-CAfile", root_pem, "-untrusted", chain, "-purpose", "sslclient", leaf]
    )
    assert f"{leaf}: OK" in verified.stdout
    return leaf


def _issuer_of(leaf: Path, bundle: Path, out: Path) -> Path:
    """The certificate of ``bundle`` that issued ``leaf`` (PKCS#7 sorts its SET OF certificates)."""
    issuer = x509.load_pem_x509_certificate(leaf.read_bytes()).issuer
    found = [c for c in x509.load_pem_x509_certificates(bundle.read_bytes()) if c.subject == issuer]
    assert len(found) == 1
    out.write_bytes(found[0].public_bytes(Encoding.PEM))
    return out


def ocsp_status(server: RunningServer, issuer: Path, leaf: Path, root_pem: Path) -> str:
    out = run(
        [
            "openssl",
            "ocsp",
            "-issuer",
            issuer,
            "-cert",
            leaf,
            "-url",
            f"{server.http_url}/ocsp",
            "-CAfile",
            root_pem,
            "-verify_other",
            issuer,
        ]
    )
    assert "Response verify OK" in out.stderr, out.stderr
    return out.stdout


def test_issuing_ca_under_a_root_operated_by_openssl_ca(tmp_path):
    root = openssl_root(tmp_path / "company-root")
    data = tmp_path / "plant"
    init_external(data, root / "root.pem")
    # pending: nothing is issued yet, and the service refuses to start, saying why
    listed = json.loads(otward(data, "ca", "list", "--json").stdout)
    assert [(c["name"], c["status"].split(":")[0]) for c in listed] == [("issuing", "pending")]
    refused = otward(data, "serve", "--port", str(free_port()), "--http-port", str(free_port()), check=False)
    assert refused.returncode == 1
    assert "otward ca import-cert issuing" in refused.stderr + refused.stdout

    signed = openssl_ca_sign(root, data / "issuing.csr", tmp_path / "issuing-signed.pem")
    text = run(["openssl", "x509", "-in", signed, "-noout", "-text"]).stdout
    assert "CA:TRUE, pathlen:0" in text  # copied from the request otward wrote
    imported = json.loads(
        otward(
            data,
            "ca",
            "import-cert",
            "issuing",
            "--cert",
            str(signed),
            "--chain",
            str(root / "root.pem"),
            "--json",
        ).stdout
    )
    assert imported["service_tls_created"] is True
    assert imported["subject"] == "CN=ACME Plant 7 issuing CA,O=ACME Plant 7"
    assert (data / "root.pem").read_bytes() == (root / "root.pem").read_bytes()

    server = start_server(data, ready_crl="issuing")
    try:
        leaf = enroll_and_check(server, tmp_path, root / "root.pem")
        issuer = _issuer_of(leaf, tmp_path / "cacerts.pem", tmp_path / "issuer.pem")
        assert f"{leaf}: good" in ocsp_status(server, issuer, leaf, root / "root.pem")
        # the CRL of the imported CA, checked by openssl against the chain to the offline root
        run(["curl", "-sS", "-o", tmp_path / "issuing.crl", f"{server.http_url}/crl/issuing.crl"])
        run(
            [
                "openssl",
                "crl",
                "-inform",
                "DER",
                "-in",
                tmp_path / "issuing.crl",
                "-out",
                tmp_path / "crl.pem",
            ]
        )
        checked = run(
            [
                "openssl",
                "verify",
                "-CAfile",
                root / "root.pem",
                "-untrusted",
                issuer,
                "-CRLfile",
                tmp_path / "crl.pem",
                "-crl_check",
                leaf,
            ]
        )
        assert f"{leaf}: OK" in checked.stdout
    finally:
        stop_server(server)
    # the audit trail verifies against root.pem, the external root
    otward(data, "audit", "verify")


def test_a_certificate_that_is_not_a_ca_or_not_for_the_key_is_refused(tmp_path):
    root = openssl_root(tmp_path / "company-root")
    data = tmp_path / "plant"
    init_external(data, root / "root.pem")
    # signed as an end entity: openssl x509 -req without the CA extensions
    write(tmp_path / "leaf.ext", "basicConstraints=critical,CA:FALSE\nsubjectKeyIdentifier=hash\n")
    not_ca = tmp_path / "not-ca.pem"
    run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            data / "issuing.csr",
            "-CA",
            root / "root.pem",
            "-CAkey",
            root / "root.key",
            "-CAcreateserial",
            "-days",
            "365",
            "-sha256",
            "-extfile",
            tmp_path / "leaf.ext",
            "-out",
            not_ca,
        ]
    )
    refused = otward(
        data,
        "ca",
        "import-cert",
        "issuing",
        "--cert",
        str(not_ca),
        "--chain",
        str(root / "root.pem"),
        check=False,
    )
    assert refused.returncode == 1
    assert "not a CA certificate" in refused.stderr
    # a CA certificate for another key (some other request signed by the same root)
    other = tmp_path / "other.csr"
    other.write_bytes(build_csr(make_key(), cn="someone else"))
    wrong_key = openssl_ca_sign(root, other, tmp_path / "other.pem")
    refused = otward(
        data,
        "ca",
        "import-cert",
        "issuing",
        "--cert",
        str(wrong_key),
        "--chain",
        str(root / "root.pem"),
        check=False,
    )
    assert refused.returncode == 1
    assert "not for the key of CA 'issuing'" in refused.stderr
    # the right certificate with the chain of another root
    stranger = openssl_root(tmp_path / "stranger")
    signed = openssl_ca_sign(root, data / "issuing.csr", tmp_path / "issuing.pem")
    refused = otward(
        data,
        "ca",
        "import-cert",
        "issuing",
        "--cert",
        str(signed),
        "--chain",
        str(stranger / "root.pem"),
        check=False,
    )
    assert refused.returncode == 1
    assert "does not chain to the root given" in refused.stderr
    # every refusal is audited, and the CA is still pending
    pki = Pki.open(load_settings(data))
    try:
        assert pki.authorities.is_pending("issuing")
    finally:
        pki.close()
    events = json.loads(otward(data, "audit", "list", "--type", "ca.imported", "--json").stdout)["items"]
    assert [e["outcome"] for e in events] == ["failure"] * 3


def test_issuing_ca_signed_by_a_second_offline_otward_installation(tmp_path):
    offline = tmp_path / "offline"
    otward(offline, "init", "--org", "ACME Corp")
    data = tmp_path / "plant"
    init_external(data, offline / "root.pem")
    signed, chain = tmp_path / "issuing.pem", tmp_path / "chain.pem"
    out = json.loads(
        otward(
            offline,
            "ca",
            "sign-csr",
            str(data / "issuing.csr"),
            "--parent",
            "root",
            "--out",
            str(signed),
            "--chain-out",
            str(chain),
            "--json",
        ).stdout
    )
    assert out["subject"] == "CN=ACME Plant 7 issuing CA,O=ACME Plant 7"
    events = json.loads(otward(offline, "audit", "list", "--type", "ca.csr_signed", "--json").stdout)
    assert [e["subject"] for e in events["items"]] == ["CN=ACME Plant 7 issuing CA,O=ACME Plant 7"]
    otward(data, "ca", "import-cert", "issuing", "--cert", str(signed), "--chain", str(chain))

    server = start_server(data, ready_crl="issuing")
    try:
        leaf = enroll_and_check(server, tmp_path, offline / "root.pem")
        issuer = _issuer_of(leaf, tmp_path / "cacerts.pem", tmp_path / "issuer.pem")
        assert f"{leaf}: good" in ocsp_status(server, issuer, leaf, offline / "root.pem")
    finally:
        stop_server(server)


def _export(data: Path, name: str, out: Path, *, only_ca: bool = False) -> Path:
    """``ca export NAME`` (the chain up to the root), or with ``only_ca`` just NAME's certificate."""
    pem = otward(data, "ca", "export", name).stdout
    if only_ca:
        pem = x509.load_pem_x509_certificates(pem.encode())[0].public_bytes(Encoding.PEM).decode()
    return write(out, pem)


def _issue_cli(data: Path, directory: Path, stem: str, ca: str) -> Path:
    csr = directory / f"{stem}.csr"
    csr.write_bytes(build_csr(make_key(), cn=stem))
    out = directory / f"{stem}.pem"
    otward(data, "cert", "issue", "--csr", str(csr), "--profile", "tls-client", "--ca", ca, "--out", str(out))
    return out


def test_root_rollover_link_certificates_are_accepted_by_openssl(tmp_path):
    data = tmp_path / "data"
    otward(data, "init", "--org", "ACME Chemicals")
    old_root = write(tmp_path / "old-root.pem", (data / "root.pem").read_text())
    old_leaf = _issue_cli(data, tmp_path, "old-leaf", "issuing")
    issuing = _export(data, "issuing", tmp_path / "issuing.pem", only_ca=True)

    out = json.loads(otward(data, "ca", "rollover", "root", "--json").stdout)
    assert out["name"] == "root-g2"
    old_with_new, new_with_old = (Path(p) for p in out["links"])
    assert old_with_new.parent == data / "ca-links"
    new_root = _export(data, "root-g2", tmp_path / "new-root.pem", only_ca=True)
    otward(data, "ca", "create", "plant-b", "--parent", "root")  # signed by the new root now
    new_leaf = _issue_cli(data, tmp_path, "new-leaf", "plant-b")
    plant_b = _export(data, "plant-b", tmp_path / "plant-b.pem", only_ca=True)

    # What a relying party is handed: the issuing CA and a link certificate, never the other root.
    def verify(anchor: Path, untrusted: list[Path], leaf: Path) -> subprocess.CompletedProcess[str]:
        bundle = write(tmp_path / "untrusted.pem", "".join(p.read_text() for p in untrusted))
        return run(["openssl", "verify", "-CAfile", anchor, "-untrusted", bundle, leaf], check=False)

    # a relying party still trusting only the old root reaches the new hierarchy through OldWithNew
    assert verify(old_root, [plant_b, old_with_new], new_leaf).returncode == 0
    assert verify(old_root, [plant_b], new_leaf).returncode != 0
    # one trusting only the new root reaches what the old root signed through NewWithOld
    assert verify(new_root, [issuing, new_with_old], old_leaf).returncode == 0
    assert verify(new_root, [issuing], old_leaf).returncode != 0


def test_a_revoked_sub_ca_fails_its_leaves_in_openssl_and_issues_nothing(tmp_path):
    data = tmp_path / "data"
    otward(data, "init", "--org", "ACME Chemicals")
    otward(data, "ca", "create", "plant-a", "--parent", "root")
    leaf = _issue_cli(data, tmp_path, "plc", "plant-a")
    chain = _export(data, "plant-a", tmp_path / "plant-a-chain.pem")
    otward(data, "ca", "revoke", "plant-a", "--reason", "cACompromise")
    crls = tmp_path / "crls.pem"
    for name in ("root", "plant-a"):
        otward(data, "crl", "generate", "--ca", name, "--out", str(tmp_path / f"{name}.crl"))
        run(
            [
                "openssl",
                "crl",
                "-inform",
                "DER",
                "-in",
                tmp_path / f"{name}.crl",
                "-out",
                tmp_path / f"{name}.crl.pem",
            ]
        )
    write(crls, "".join((tmp_path / f"{n}.crl.pem").read_text() for n in ("root", "plant-a")))
    checked = run(
        [
            "openssl",
            "verify",
            "-CAfile",
            data / "root.pem",
            "-untrusted",
            chain,
            "-CRLfile",
            crls,
            "-crl_check_all",
            leaf,
        ],
        check=False,
    )
    assert checked.returncode != 0
    assert "certificate revoked" in checked.stdout + checked.stderr
    text = run(["openssl", "crl", "-in", tmp_path / "root.crl.pem", "-noout", "-text"]).stdout
    assert "CA Compromise" in text
    refused = otward(
        data,
        "cert",
        "issue",
        "--csr",
        str(tmp_path / "plc.csr"),
        "--profile",
        "tls-client",
        "--ca",
        "plant-a",
        "--out",
        str(tmp_path / "again.pem"),
        check=False,
    )
    assert refused.returncode == 1
    assert "CA 'plant-a' was revoked on" in refused.stderr
    listed = {c["name"]: c["status"] for c in json.loads(otward(data, "ca", "list", "--json").stdout)}
    assert listed["plant-a"] == "revoked"

"""Coverage-guided fuzzing of otward's DER parsers with Atheris (libFuzzer for Python).

Not part of the test suite: run it with ``scripts/fuzz-deep`` (docs/testing.md), which needs the
``fuzz-deep`` extra (``pip install -e '.[fuzz-deep]'``). Targets:

* ``csr``: bytes as a PKCS#10 request, through :func:`load_csr` and :func:`validate_csr`;
* ``csr-signed``: bytes as a CertificationRequestInfo, signed by a fixed key, so the fuzzer
  explores the checks behind the signature (subject, attributes, extensions, SANs);
* ``ocsp``: bytes as an OCSP request, through :func:`load_ocsp_request`;
* ``crl``: bytes as a CRL, through the gateway's :func:`load_crl`;
* ``crl-signed``: bytes as a TBSCertList, signed by the trusted CA, so the fuzzer explores what
  the gateway reads behind the signature;
* ``der``: bytes through :func:`otward.core.der.validate_der`, the strict DER walker.

Anything but the documented otward errors is a crash: libFuzzer stops and writes the input to
``<artifacts>/crash-*``. The seed corpus is the valid objects the Hypothesis targets mutate.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["otward"]):
    from otward.core.csr import load_csr, validate_csr
    from otward.core.der import validate_der
    from otward.core.ocsp import load_ocsp_request
    from otward.errors import OtwardError, ParseError, PolicyViolationError
    from otward.gateway.revocation import load_crl

from tests.fuzz.core.test_ocsp import valid_requests
from tests.fuzz.objects import crls, csrs, fixed_ca, resign_crl


def _csr(data: bytes) -> None:
    try:
        validate_csr(load_csr(data))
    except OtwardError:
        pass


def _csr_signed(data: bytes) -> None:
    _csr(csrs()[0].resign(data))


def _ocsp(data: bytes) -> None:
    try:
        load_ocsp_request(data)
    except ParseError:
        pass


def _crl(data: bytes) -> None:
    try:
        load_crl(data, [fixed_ca().certificate])
    except (ParseError, PolicyViolationError):
        pass


def _crl_signed(data: bytes) -> None:
    _crl(resign_crl(data))


def _der(data: bytes) -> None:
    try:
        validate_der(data)
    except ParseError:
        pass


def _seeds(target: str) -> list[bytes]:
    from tests.fuzz.mutate import subtree

    if target in ("csr", "der"):
        return [c.der for c in csrs()] + list(crls())
    if target == "csr-signed":
        return [subtree(c.der, [0])[1].encode() for c in csrs()]
    if target == "ocsp":
        return valid_requests(fixed_ca().certificate)
    if target == "crl":
        return list(crls())
    return [subtree(crl, [0])[1].encode() for crl in crls()]


TARGETS: dict[str, Callable[[bytes], None]] = {
    "csr": _csr,
    "csr-signed": _csr_signed,
    "ocsp": _ocsp,
    "crl": _crl,
    "crl-signed": _crl_signed,
    "der": _der,
}


def main() -> None:
    """``der.py TARGET CORPUS_DIR [libFuzzer options]``; the corpus is seeded when empty."""
    if len(sys.argv) < 3 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} CORPUS_DIR [libFuzzer options]")
    target, corpus = sys.argv[1], Path(sys.argv[2])
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for index, seed in enumerate(_seeds(target)):
            (corpus / f"seed-{index}").write_bytes(seed)
    atheris.Setup([sys.argv[0], *sys.argv[2:]], TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()

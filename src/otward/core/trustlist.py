"""The OPC UA trust list layout (OPC 10000-12, Table F.1 and 7.8.2.8), planned from plain values.

::

    trusted/certs/<ca>.der   CAs whose application instance certificates are accepted
    trusted/crl/<ca>.crl     their CRLs
    issuers/certs/<ca>.der   CAs needed only to build the chain (the root); not trusted on their own
    issuers/crl/<ca>.crl     their CRLs

Putting an issuing CA in ``trusted/certs`` means every application certificate it
issues is accepted, so only the CAs chosen for OPC UA go there; their parents up
to the root go to ``issuers``: a sibling CA under the same root stays untrusted in
a stack that keeps the two lists apart. Every CA in the plan has its CRL beside
it: OPC UA stacks may refuse the certificates of a CA whose CRL is missing
(Bad_CertificateRevocationUnknown).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from otward.core.identifiers import CA_NAME
from otward.errors import InvalidRequestError, PolicyViolationError

__all__ = ["TRUST_LIST_DIRECTORIES", "TrustListEntry", "TrustListFile", "issuer_names", "plan_trust_list"]

TRUST_LIST_DIRECTORIES = ("trusted/certs", "trusted/crl", "issuers/certs", "issuers/crl")


@dataclass(frozen=True)
class TrustListEntry:
    """One CA for the trust list: its name, certificate and current CRL (DER)."""

    name: str
    certificate: x509.Certificate
    crl_der: bytes


@dataclass(frozen=True)
class TrustListFile:
    """A file of the trust list: path relative to the trust list directory, and its DER content."""

    path: str
    content: bytes


def _check_crl(entry: TrustListEntry) -> None:
    try:
        crl = x509.load_der_x509_crl(entry.crl_der)
    except ValueError:
        raise InvalidRequestError(f"CRL of CA '{entry.name}' is not DER", rule="trustlist-crl") from None
    if crl.issuer != entry.certificate.subject:
        raise InvalidRequestError(
            f"CRL given for CA '{entry.name}' was issued by someone else", rule="trustlist-crl"
        )
    if not crl.is_signature_valid(entry.certificate.public_key()):  # type: ignore[arg-type]
        raise InvalidRequestError(
            f"CRL of CA '{entry.name}' does not verify with the CA's key", rule="trustlist-crl"
        )


def plan_trust_list(
    trusted: Sequence[TrustListEntry],
    issuers: Sequence[TrustListEntry],
) -> tuple[TrustListFile, ...]:
    """The files of a trust list with ``trusted`` CAs and chain-only ``issuers``.

    Raises when there is nothing to trust, a name is unusable as a file name, a CA is listed
    twice or in both lists, or a CRL does not belong to its CA.
    """
    if not trusted:
        raise InvalidRequestError("a trust list needs at least one trusted CA", rule="trustlist-empty")
    seen: set[str] = set()
    files: list[TrustListFile] = []
    for directory, entries in (("trusted", trusted), ("issuers", issuers)):
        for entry in entries:
            if not CA_NAME.is_valid(entry.name):
                raise InvalidRequestError(f"CA name '{entry.name}' is not a safe file name", rule="ca-name")
            if entry.name in seen:
                raise PolicyViolationError(
                    f"CA '{entry.name}' is listed twice (trusted and issuers are exclusive)",
                    rule="trustlist-duplicate",
                )
            seen.add(entry.name)
            _check_crl(entry)
            files.append(
                TrustListFile(
                    f"{directory}/certs/{entry.name}.der", entry.certificate.public_bytes(Encoding.DER)
                )
            )
            files.append(TrustListFile(f"{directory}/crl/{entry.name}.crl", entry.crl_der))
    return tuple(files)


def issuer_names(chains: Mapping[str, Sequence[str]], trusted: Sequence[str]) -> list[str]:
    """The ancestors of the ``trusted`` CAs (``chains``: CA name -> names up to the root) that are
    not trusted themselves, in first-seen order."""
    result: list[str] = []
    for name in trusted:
        for ancestor in chains[name][1:]:
            if ancestor not in trusted and ancestor not in result:
                result.append(ancestor)
    return result

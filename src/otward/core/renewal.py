"""Re-enrollment keeps the names of the certificate it renews (RFC 7030 section 4.2.2).

A ``simplereenroll`` request carries the Subject and SubjectAltName of the certificate being
renewed. To change them it must carry the ChangeSubjectName attribute (RFC 6402 section 2.8,
``id-cmc-changeSubjectName``) and the profile must allow the change; the issuance rule that
decides is :func:`otward.core.issuance.keep_renewed_names`. This module holds the values that
rule reads: the renewed certificate's names and the change the request asks for.

The attribute is parsed with pyasn1 against the module of ``pyasn1-alt-modules``, which follows
RFC 6402 erratum 3943 (``subjectAlt`` tagged ``[1]``, so that it can be told from ``subject``).
Which fields it holds says what the request changes: ``subject`` the subject, ``subjectAlt`` the
SubjectAltName. Their values are not needed: the certificate being renewed is the one the TLS
layer authenticated, and the new names are the request's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1_alt_modules import rfc2986, rfc6402

from otward.core.names import SubjectAltNames, parse_san_extension
from otward.errors import ParseError

__all__ = ["CHANGE_SUBJECT_NAME_OID", "NameChange", "Renewal", "parse_change_subject_name", "renewal_of"]

CHANGE_SUBJECT_NAME_OID = x509.ObjectIdentifier(str(rfc6402.id_cmc_changeSubjectName))
"""id-cmc-changeSubjectName (1.3.6.1.5.5.7.7.36)."""

_RULE = "csr-change-subject-name"


@dataclass(frozen=True)
class NameChange:
    """What a ChangeSubjectName attribute asks to change: the subject, the SubjectAltName, or both."""

    subject: bool
    subject_alt: bool


@dataclass(frozen=True)
class Renewal:
    """The names of the certificate being renewed and the change the renewing request asks for."""

    subject: x509.Name
    sans: SubjectAltNames
    change: NameChange | None = None


def renewal_of(certificate: x509.Certificate, csr: x509.CertificateSigningRequest) -> Renewal:
    """The :class:`Renewal` of ``certificate`` by ``csr``; raises :class:`ParseError` for a
    malformed ChangeSubjectName attribute."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = SubjectAltNames()
    else:
        sans = parse_san_extension(extension)
    return Renewal(certificate.subject, sans, parse_change_subject_name(csr))


def parse_change_subject_name(csr: x509.CertificateSigningRequest) -> NameChange | None:
    """The request's ChangeSubjectName attribute, or None without one.

    One attribute with one value, DER, with at least one of its two fields (RFC 6402's
    ``WITH COMPONENTS`` constraint); anything else is a :class:`ParseError`."""
    try:
        request, rest = decoder.decode(
            csr.public_bytes(Encoding.DER), asn1Spec=rfc2986.CertificationRequest()
        )
    except PyAsn1Error as exc:
        raise ParseError("the csr's attributes cannot be read", rule=_RULE) from exc
    if rest:
        raise ParseError("the csr has trailing bytes", rule=_RULE)
    found = [
        attribute
        for attribute in request["certificationRequestInfo"]["attributes"]
        if attribute["type"] == rfc6402.id_cmc_changeSubjectName
    ]
    if not found:
        return None
    if len(found) != 1 or len(found[0]["values"]) != 1:
        raise ParseError("a csr holds at most one ChangeSubjectName attribute, with one value", rule=_RULE)
    raw = bytes(found[0]["values"][0])
    try:
        value, rest = decoder.decode(raw, asn1Spec=rfc6402.ChangeSubjectName())
        canonical = encoder.encode(value) == raw
    except PyAsn1Error as exc:
        raise ParseError("the ChangeSubjectName attribute is not a ChangeSubjectName", rule=_RULE) from exc
    if rest or not canonical:
        raise ParseError("the ChangeSubjectName attribute is not DER", rule=_RULE)
    change = NameChange(subject=value["subject"].isValue, subject_alt=value["subjectAlt"].isValue)
    if not (change.subject or change.subject_alt):
        raise ParseError("the ChangeSubjectName attribute names neither subject nor subjectAlt", rule=_RULE)
    return change

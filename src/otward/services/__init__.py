"""Use cases: the core's decisions composed with storage and key backends."""

from otward.services.pki import IssuedCertificate, Pki

__all__ = ["IssuedCertificate", "Pki"]

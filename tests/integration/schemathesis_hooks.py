"""Loaded by schemathesis (``SCHEMATHESIS_HOOKS``) in the conformance runs: EST bodies are
``application/pkcs10`` (base64 text), which schemathesis sends the way it sends ``text/plain``."""

from __future__ import annotations

import schemathesis

schemathesis.serializer.alias("application/pkcs10", "text/plain")

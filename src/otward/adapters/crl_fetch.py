"""Fetching a CRL over HTTP(S): bounded in time and size; what it holds is checked by the caller."""

from __future__ import annotations

import httpx

from otward.errors import BackendError

__all__ = ["MAX_CRL", "fetch_crl"]

MAX_CRL = 32 * 1024 * 1024
TIMEOUT_SECONDS = 15.0


def fetch_crl(url: str) -> bytes:
    """The body at ``url`` (a CRL, DER or PEM); BackendError when it cannot be had or exceeds
    :data:`MAX_CRL`."""
    try:
        with (
            httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise BackendError(f"CRL {url} answered HTTP {response.status_code}", rule="manufacturer-crl")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_CRL:
                    raise BackendError(f"CRL {url} is larger than {MAX_CRL} bytes", rule="manufacturer-crl")
            return bytes(body)
    except httpx.HTTPError as exc:
        raise BackendError(f"cannot fetch CRL {url}: {exc}", rule="manufacturer-crl") from exc

"""base64url without padding, and a clear refusal of what is not."""

from __future__ import annotations

import pytest

from otward.core import b64url
from otward.errors import InvalidRequestError


@pytest.mark.parametrize("data", [b"", b"\xff", b"\xfb\xff", b"\x00" * 32, bytes(range(256))])
def test_round_trip_without_padding(data):
    text = b64url.encode(data)
    assert "=" not in text
    assert "+" not in text
    assert "/" not in text
    assert b64url.decode(text, "nonce") == data
    assert b64url.decode(text + "=" * (-len(text) % 4), "nonce") == data  # padding is accepted too


def test_not_base64url_names_the_field():
    with pytest.raises(InvalidRequestError, match="signature must be base64url"):
        b64url.decode("a", "signature")

"""Response heads in conventional capitalisation, as the EST clients in devices compare names."""

from __future__ import annotations

import pytest

from otward.web.header_names import conventional_head, conventional_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (b"content-type", b"Content-Type"),
        (b"content-length", b"Content-Length"),
        (b"www-authenticate", b"WWW-Authenticate"),
        (b"WWW-AUTHENTICATE", b"WWW-Authenticate"),
        (b"retry-after", b"Retry-After"),
        (b"x-content-type-options", b"X-Content-Type-Options"),
        (b"strict-transport-security", b"Strict-Transport-Security"),
        (b"etag", b"ETag"),
        (b"date", b"Date"),
        (b"Content-Type", b"Content-Type"),
    ],
)
def test_names_take_their_conventional_form(name, expected):
    assert conventional_name(name) == expected


def test_only_the_names_of_the_head_change():
    head = (
        b"HTTP/1.1 401 Unauthorized\r\n"
        b"content-type: text/plain; charset=utf-8\r\n"
        b'www-authenticate: Basic realm="otward-est", Bearer realm="otward-est"\r\n'
        b"content-length: 12\r\n"
        b"\r\n"
    )
    body = b"content-type: stays as sent\r\n\r\nx-y: z"
    assert conventional_head(head + body) == (
        b"HTTP/1.1 401 Unauthorized\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b'WWW-Authenticate: Basic realm="otward-est", Bearer realm="otward-est"\r\n'
        b"Content-Length: 12\r\n"
        b"\r\n" + body
    )


def test_a_head_without_fields_is_left_alone():
    assert conventional_head(b"HTTP/1.1 100 Continue\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"

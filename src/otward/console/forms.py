"""Reading an HTML form's fields (``application/x-www-form-urlencoded``) from a bounded body."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from fastapi import Request

from otward.errors import InvalidRequestError

__all__ = ["MAX_FIELDS", "MAX_FORM_BYTES", "Form", "read_form"]

MAX_FORM_BYTES = 64 * 1024  # also the body limit of /ui/ (otward.http.app.BODY_LIMITS)
MAX_FIELDS = 200


@dataclass(frozen=True)
class Form:
    """The fields of a submitted form, each name with its values in order."""

    fields: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def get(self, name: str, default: str = "") -> str:
        """The first value of ``name``, stripped of surrounding white space."""
        values = self.fields.get(name)
        return values[0].strip() if values else default

    def values(self, name: str) -> tuple[str, ...]:
        return self.fields.get(name, ())


async def read_form(request: Request) -> Form:
    """The request's form; a body that is not a URL-encoded form of at most :data:`MAX_FIELDS`
    UTF-8 fields is refused with a message saying so (the body size was bounded before)."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = await request.body()
    if not body:
        return Form()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidRequestError("a form must be sent as application/x-www-form-urlencoded", rule="form")
    if len(body) > MAX_FORM_BYTES:
        raise InvalidRequestError(f"a form may hold at most {MAX_FORM_BYTES} bytes", rule="form")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequestError(
            f"the form is not UTF-8 or has more than {MAX_FIELDS} fields", rule="form"
        ) from None
    collected: dict[str, list[str]] = {}
    for name, value in pairs:
        collected.setdefault(name, []).append(value)
    return Form({name: tuple(values) for name, values in collected.items()})

"""Paging of the console's lists: the page number read from a query string, and where a page
starts and ends with the links to its neighbours (keeping the filters)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from otward.errors import InvalidRequestError

__all__ = ["MAX_PAGE", "PAGE_SIZE", "Pager", "pager", "parse_page"]

PAGE_SIZE = 50
MAX_PAGE = 1_000_000


def parse_page(text: str | None) -> int:
    """A page number from 1 to :data:`MAX_PAGE`; InvalidRequestError (rule ``page``) otherwise.

    ASCII digits only and at most seven of them: ``str.isdigit`` also admits ``²`` and
    ``int()`` refuses more than 4,300 digits, and either would escape as a 500."""
    value = (text or "").strip() or "1"
    if not (value.isascii() and value.isdigit() and len(value) <= 7 and 1 <= int(value) <= MAX_PAGE):
        raise InvalidRequestError(
            f"page: a whole number from 1 to {MAX_PAGE}, not '{value[:16]}'", rule="page"
        )
    return int(value)


@dataclass(frozen=True)
class Pager:
    """Where a page of a list is, and the links to its neighbours (keeping the filters)."""

    first: int
    last: int
    total: int
    previous: str | None
    next: str | None


def pager(path: str, filters: Mapping[str, str], page: int, shown: int, total: int) -> Pager:
    """The pager of page ``page`` (of :data:`PAGE_SIZE`) at ``path`` showing ``shown`` of ``total``."""
    kept = {k: v for k, v in filters.items() if v}

    def link(number: int) -> str:
        query = urlencode({**kept, "page": str(number)} if number > 1 else kept)
        return path + (f"?{query}" if query else "")

    first = (page - 1) * PAGE_SIZE + 1 if shown else 0
    return Pager(
        first=first,
        last=first + shown - 1 if shown else 0,
        total=total,
        previous=link(page - 1) if page > 1 else None,
        next=link(page + 1) if page * PAGE_SIZE < total else None,
    )

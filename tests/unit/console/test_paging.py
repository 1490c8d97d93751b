"""Page numbers from a query string, and the pager's links."""

from __future__ import annotations

import pytest

from otward.console.paging import PAGE_SIZE, pager, parse_page
from otward.errors import InvalidRequestError


@pytest.mark.parametrize(("text", "page"), [(None, 1), ("", 1), (" 3 ", 3), ("1000000", 1_000_000)])
def test_page_numbers(text: str | None, page: int) -> None:
    assert parse_page(text) == page


@pytest.mark.parametrize("text", ["0", "-1", "1000001", "x", "1.5", "²", "٣", "9" * 5000])
def test_anything_else_is_a_400_naming_the_page(text: str) -> None:
    with pytest.raises(InvalidRequestError, match="page: a whole number") as refused:
        parse_page(text)
    assert refused.value.rule == "page"


def test_the_pager_keeps_the_filters_and_stops_at_the_ends() -> None:
    first = pager("/ui/x", {"q": "a b", "status": ""}, 1, PAGE_SIZE, 120)
    assert (first.first, first.last, first.total, first.previous) == (1, 50, 120, None)
    assert first.next == "/ui/x?q=a+b&page=2"
    last = pager("/ui/x", {"q": "a b"}, 3, 20, 120)
    assert (last.first, last.last, last.next) == (101, 120, None)
    assert last.previous == "/ui/x?q=a+b&page=2"
    assert pager("/ui/x", {}, 2, 50, 120).previous == "/ui/x"
    assert pager("/ui/x", {}, 1, 0, 0).first == 0

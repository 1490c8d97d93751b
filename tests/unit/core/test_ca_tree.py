from __future__ import annotations

from otward.core.ca_tree import tree_order


def test_roots_first_then_their_subordinates_sorted() -> None:
    parents = {"issuing": "root", "root": None, "line-2": "issuing", "aaa": "issuing", "root-2": None}
    assert tree_order(parents) == [("root", 0), ("issuing", 1), ("aaa", 2), ("line-2", 2), ("root-2", 0)]


def test_a_parent_outside_is_a_top() -> None:
    assert tree_order({"plant": "company-root", "line": "plant"}) == [("plant", 0), ("line", 1)]


def test_a_cycle_is_listed_not_dropped() -> None:
    assert tree_order({"a": "b", "b": "a"}) == [("a", 0), ("b", 1)]


def test_empty() -> None:
    assert tree_order({}) == []

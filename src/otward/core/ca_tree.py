"""The hierarchy of an installation's CAs as the console draws it: roots first, each CA's
subordinates under it. Pure: names and parent names in, an order with depths out."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["tree_order"]


def tree_order(parents: Mapping[str, str | None]) -> list[tuple[str, int]]:
    """Every name of ``parents`` (name -> parent name) once, depth first, with its depth.

    A name without a parent, or whose parent is not in the mapping (signed outside otward), is a
    top of the tree at depth 0; siblings are sorted by name. Names caught in a parent cycle (which
    the store should never hold) are still listed, at depth 0, rather than dropped.
    """
    children: dict[str, list[str]] = {}
    tops = []
    for name, parent in parents.items():
        if parent is None or parent not in parents:
            tops.append(name)
        else:
            children.setdefault(parent, []).append(name)
    order: list[tuple[str, int]] = []
    seen: set[str] = set()

    def visit(name: str, depth: int) -> None:
        if name in seen:
            return
        seen.add(name)
        order.append((name, depth))
        for child in sorted(children.get(name, ())):
            visit(child, depth + 1)

    for top in sorted(tops):
        visit(top, 0)
    for name in sorted(parents):  # only members of a cycle are left
        visit(name, 0)
    return order

"""Structure-aware mutation of valid DER (and of any bytes), as Hypothesis strategies.

A valid object (built with ``cryptography``) is parsed into a TLV tree; a few nodes are changed the
way hostile encoders do (non-minimal and indefinite lengths, another string type, deep nesting, a
node dropped, repeated or replaced, a length that claims more than there is) and the tree is
encoded again with correct outer lengths, so the damage sits deep inside an otherwise well-formed
structure. Byte-level damage (flipped bytes, truncation, garbage appended) comes on top.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hypothesis import strategies as st

# Tags a value can be re-typed to: the string types, OCTET/BIT STRING, INTEGER, NULL, OID, BOOLEAN,
# times, SEQUENCE/SET and a few context and application tags.
RETAGS = (
    0x0C, 0x13, 0x14, 0x16, 0x1A, 0x1C, 0x1E, 0x12, 0x15, 0x04, 0x03, 0x02, 0x05, 0x06, 0x01,
    0x17, 0x18, 0x0A, 0x30, 0x31, 0x80, 0x81, 0xA0, 0xA1, 0xA3, 0x5F, 0x1F, 0xBF,
)  # fmt: skip


@dataclass
class Node:
    """One TLV: identifier octets, and either content (primitive) or children (constructed)."""

    tag: bytes
    content: bytes = b""
    children: list[Node] | None = None
    length: Callable[[int], bytes] | None = None  # a non-minimal length encoding, when mutated
    indefinite: bool = False
    extra: bytes = b""  # octets smuggled after the content, inside the declared length
    raw: bytes | None = None  # already encoded (a deep nest): written as is, never mutated again

    def body(self) -> bytes:
        if self.children is not None:
            return b"".join(child.encode() for child in self.children) + self.extra
        return self.content + self.extra

    def encode(self) -> bytes:
        if self.raw is not None:
            return self.raw
        body = self.body()
        if self.indefinite:
            return self.tag + b"\x80" + body + b"\x00\x00"
        return self.tag + (self.length or minimal_length)(len(body)) + body


@dataclass
class Tree:
    roots: list[Node] = field(default_factory=list)
    trailing: bytes = b""

    def encode(self) -> bytes:
        return b"".join(node.encode() for node in self.roots) + self.trailing

    def nodes(self) -> list[tuple[list[Node], int]]:
        """Every node as (its parent's list, its index), depth first."""
        found: list[tuple[list[Node], int]] = []

        def walk(siblings: list[Node]) -> None:
            for index, node in enumerate(siblings):
                if node.raw is not None:
                    continue
                found.append((siblings, index))
                if node.children is not None:
                    walk(node.children)

        walk(self.roots)
        return found


def minimal_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _header(data: bytes, pos: int) -> tuple[bytes, bool, int, int]:
    start = pos
    first = data[pos]
    pos += 1
    if first & 0x1F == 0x1F:
        while data[pos] & 0x80:
            pos += 1
        pos += 1
    tag = data[start:pos]
    octet = data[pos]
    pos += 1
    if octet & 0x80:
        count = octet & 0x7F
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    else:
        length = octet
    return tag, bool(first & 0x20), length, pos


def parse(data: bytes) -> Tree:
    """The TLV tree of DER ``data`` (assumed valid: it comes from ``cryptography``)."""

    def items(data: bytes) -> list[Node]:
        nodes, pos = [], 0
        while pos < len(data):
            tag, constructed, length, pos = _header(data, pos)
            content = data[pos : pos + length]
            pos += length
            node = Node(tag, content)
            if constructed:
                try:
                    node.children = items(content)
                except IndexError:  # pragma: no cover - valid input only
                    node.children = None
            nodes.append(node)
        return nodes

    return Tree(items(data))


# -- the mutations ---------------------------------------------------------------------------------
def _long_length(pad: int) -> Callable[[int], bytes]:
    """The length in the long form with ``pad`` leading zero octets (BER allows it, DER does not)."""

    def encode(n: int) -> bytes:
        raw = n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")
        raw = b"\x00" * pad + raw
        return bytes([0x80 | len(raw)]) + raw

    return encode


def _lying_length(delta: int) -> Callable[[int], bytes]:
    """A length that claims ``delta`` more (or fewer) octets than there are."""

    def encode(n: int) -> bytes:
        return minimal_length(max(0, n + delta))

    return encode


def _huge_length(n: int) -> bytes:
    return b"\x84\xff\xff\xff\xff"


@st.composite
def node_mutation(draw: st.DrawFn, tree: Tree) -> None:
    """Change one node of ``tree`` in place."""
    siblings, index = draw(st.sampled_from(tree.nodes()))
    node = siblings[index]
    kind = draw(
        st.sampled_from(
            [
                "long-length",
                "indefinite",
                "lying-length",
                "huge-length",
                "retag",
                "nest",
                "drop",
                "repeat",
                "content",
                "extra",
                "empty",
                "high-tag",
                "integer",
            ]
        )
    )
    if kind == "long-length":
        node.length = _long_length(draw(st.integers(0, 3)))
    elif kind == "indefinite":
        node.indefinite = True
    elif kind == "lying-length":
        node.length = _lying_length(draw(st.sampled_from([-2, -1, 1, 2, 100, 1 << 16])))
    elif kind == "huge-length":
        node.length = _huge_length
    elif kind == "retag":
        tag = draw(st.sampled_from(RETAGS))
        node.tag = bytes([tag]) + (b"\x81\x00" if tag & 0x1F == 0x1F else b"")
        if tag & 0x20 and node.children is None:
            node.children = [Node(b"\x0c", node.content)] if draw(st.booleans()) else []
        if not tag & 0x20 and node.children is not None:
            node.content, node.children = node.body(), None
    elif kind == "nest":
        depth = draw(st.sampled_from([1, 2, 8, 33, 64, 200, 1000]))
        wrapper = draw(st.sampled_from([b"\x30", b"\x31", b"\xa0", b"\x24"]))
        encoded = node.encode()
        for _ in range(depth):  # iteratively: a tree of Nodes this deep would exhaust Python's stack
            encoded = wrapper + minimal_length(len(encoded)) + encoded
        siblings[index] = Node(b"", raw=encoded)
    elif kind == "drop":
        del siblings[index]
    elif kind == "repeat":
        siblings.insert(index, Node(node.tag, node.content, node.children and list(node.children)))
    elif kind == "content":
        node.children = None
        node.content = draw(st.binary(max_size=64))
    elif kind == "extra":
        node.extra = draw(st.binary(min_size=1, max_size=8))
    elif kind == "empty":
        node.content, node.children = b"", ([] if node.children is not None else None)
    elif kind == "high-tag":
        node.tag = bytes([node.tag[0] | 0x1F]) + draw(st.sampled_from([b"\x01", b"\x80\x01", b"\x1f"]))
    elif kind == "integer":
        node.tag, node.children = b"\x02", None
        node.content = draw(
            st.sampled_from([b"", b"\x00", b"\x00\x01", b"\xff\x80", b"\x80", b"\x7f" * 40, b"\x01" * 200])
        )


@st.composite
def byte_mutation(draw: st.DrawFn, data: bytes) -> bytes:
    """Flip, cut, insert or append bytes of ``data``."""
    kind = draw(st.sampled_from(["flip", "truncate", "append", "insert", "overwrite"]))
    if not data:
        return draw(st.binary(max_size=32))
    position = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        mask = draw(st.integers(1, 255))
        return data[:position] + bytes([data[position] ^ mask]) + data[position + 1 :]
    if kind == "truncate":
        return data[:position]
    if kind == "append":
        return data + draw(st.binary(min_size=1, max_size=16))
    if kind == "insert":
        return data[:position] + draw(st.binary(min_size=1, max_size=8)) + data[position:]
    chunk = draw(st.binary(min_size=1, max_size=8))
    return data[:position] + chunk + data[position + len(chunk) :]


@st.composite
def mutated_der(draw: st.DrawFn, valid: Sequence[bytes] | bytes, *, bytes_too: bool = True) -> bytes:
    """One of ``valid`` with up to three node mutations and (with ``bytes_too``) up to two byte
    mutations; sometimes unchanged, so the happy path stays covered."""
    base = valid if isinstance(valid, bytes) else draw(st.sampled_from(list(valid)))
    tree = parse(base)
    for _ in range(draw(st.integers(0, 3))):
        if not tree.nodes():
            break
        draw(node_mutation(tree))
    if draw(st.booleans()):
        tree.trailing = draw(st.binary(max_size=4))
    data = tree.encode()
    if bytes_too:
        for _ in range(draw(st.integers(0, 2))):
            data = draw(byte_mutation(data))
    return data


def der_inputs(valid: Sequence[bytes] | bytes) -> st.SearchStrategy[bytes]:
    """Mutated valid DER most of the time, arbitrary bytes otherwise."""
    return st.one_of(mutated_der(valid), mutated_der(valid), mutated_der(valid), st.binary(max_size=512))


def subtree(data: bytes, path: Sequence[int]) -> tuple[Tree, Node]:
    """The tree of ``data`` and its node at ``path`` (child indexes from the first root)."""
    tree = parse(data)
    node = tree.roots[0]
    for index in path:
        assert node.children is not None
        node = node.children[index]
    return tree, node


@st.composite
def mutated_inner(
    draw: st.DrawFn, data: bytes, path: Sequence[int], resign: Callable[[bytes], bytes]
) -> bytes:
    """``data`` with the TLV at ``path`` (the signed part: a TBS, a CertificationRequestInfo) mutated
    and ``resign`` applied to its new encoding, so the damage gets past the signature check."""
    _, inner = subtree(data, path)
    mutated = draw(mutated_der(inner.encode()))
    return resign(mutated)

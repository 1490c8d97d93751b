"""Policy bundles and access credentials at the gatekeeper, mutated.

A real installation (the example plant) issues a bundle for ``reactor-1`` and a credential for
Carla. Two kinds of mutation:

* of the token text (a character or segment changed, cut, swapped, ``alg: none``, another header):
  the signature no longer covers what is presented, so the bundle is refused and the credential
  gets no access, unless the change decodes to the same bytes (base64url's unused bits);
* of the signed content, re-signed with the real edge signer: the claims and the access slice are
  mangled (keys dropped, values of other types or out of range, deep nesting), so the damage gets
  past the signature and reaches the strict claim parsing, the slice and Cedar.

Either way: a refusal with a reason, or a decision; never an exception.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import event, given
from hypothesis import strategies as st

from otward.config import load_settings
from otward.core.edge.formats import answer_message
from otward.core.keys import KeyType, sign_data
from otward.edge.gatekeeper import Gatekeeper, load_roots
from otward.edge.tokens import _JWS, signing_algorithm
from otward.errors import OtwardError
from otward.services.bootstrap import initialize
from otward.services.pki import Pki
from tests.conftest import Clock
from tests.fuzz.mutate import mutated_der
from tests.fuzz.profile import CRYPTOGRAPHY_WARNINGS, fuzz_settings

pytestmark = [pytest.mark.fuzz, *CRYPTOGRAPHY_WARNINGS]

PLANT = Path(__file__).parents[3] / "examples" / "chemical-plant.yaml"
MORNING = datetime(2026, 12, 8, 7, 0, tzinfo=UTC)  # inside Carla's early shift


@dataclass
class Edge:
    pki: Pki
    roots: list[Any]
    bundle: str
    credential: str
    holder: ec.EllipticCurvePrivateKey
    signer_key: Any
    directory: Path

    def gatekeeper(self, state: str) -> Gatekeeper:
        return Gatekeeper(
            "reactor-1", self.roots, self.directory / state, clock=lambda: MORNING, trail_sync="batch"
        )


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    directory = tmp_path_factory.mktemp("fuzz-edge")
    initialize(directory / "data", key_type=KeyType.EC_P256, organization="ACME Chemicals")
    clock = Clock()
    clock.now = MORNING
    pki = Pki.open(load_settings(directory / "data"), clock=clock)
    pki.access.import_yaml(PLANT.read_text())
    holder = ec.derive_private_key(0x5EED_0ED6E, ec.SECP256R1())
    bundle = pki.edge.issue_bundle("reactor-1").token
    credential = pki.edge.issue_credential("carla", holder.public_key(), ttl=timedelta(hours=12)).token
    key, _ = pki.edge.signer()
    yield Edge(pki, load_roots(directory / "data" / "root.pem"), bundle, credential, holder, key, directory)
    pki.close()


# -- mutations ---------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None


def same_content(token: str, original: str) -> bool:
    """Whether ``token`` decodes to the same header, payload and signature as ``original``."""
    parts, theirs = token.strip().split("."), original.split(".")
    return len(parts) == 3 and all(
        _unb64(a) == _unb64(b) is not None for a, b in zip(parts, theirs, strict=True)
    )


@st.composite
def text_mutations(draw: st.DrawFn, token: str) -> str:
    header, payload, signature = token.split(".")
    kind = draw(st.sampled_from(["char", "cut", "segment", "none-alg", "header", "x5c", "swap", "junk"]))
    if kind == "char":
        position = draw(st.integers(0, len(token) - 1))
        character = draw(st.sampled_from("AaZz09-_.=+/ \n\x00é"))
        return token[:position] + character + token[position + 1 :]
    if kind == "cut":
        return token[: draw(st.integers(0, len(token) - 1))]
    if kind == "segment":
        parts = [header, payload, signature]
        parts[draw(st.integers(0, 2))] = draw(st.sampled_from(["", "e30", "AAAA", _b64(b"\xff\xfe"), "!"]))
        return ".".join(parts)
    if kind == "none-alg":
        decoded = json.loads(_unb64(header) or b"{}")
        decoded["alg"] = draw(st.sampled_from(["none", "HS256", "RS256", "ES512", ""]))
        return ".".join([_b64(json.dumps(decoded).encode()), payload, draw(st.sampled_from(["", signature]))])
    if kind == "header":
        decoded = json.loads(_unb64(header) or b"{}")
        field = draw(st.sampled_from(["typ", "x5c", "x5t#S256", "crit", "alg", "kid", "jku"]))
        if draw(st.booleans()):
            decoded.pop(field, None)
        else:
            decoded[field] = draw(json_values)
        return ".".join([_b64(json.dumps(decoded).encode()), payload, signature])
    if kind == "x5c":  # the signer's certificate itself, mutated as DER (it is what gets verified)
        decoded = json.loads(_unb64(header) or b"{}")
        chain = decoded.get("x5c") or [base64.b64encode(b"\x30\x00").decode()]
        index = draw(st.integers(0, len(chain) - 1))
        chain[index] = base64.b64encode(draw(mutated_der(base64.b64decode(chain[index])))).decode()
        decoded["x5c"] = chain
        return ".".join([_b64(json.dumps(decoded).encode()), payload, signature])
    if kind == "swap":
        return ".".join([payload, header, signature])
    return draw(st.text(max_size=64))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**63, -(2**63), 10**30, 1e308])
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, (*prefix, index))
    return found


@st.composite
def mangled_payloads(draw: st.DrawFn, payload: dict[str, Any]) -> bytes:
    document = json.loads(json.dumps(payload))
    deep: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(document)[1:]))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        kind = draw(st.sampled_from(["value", "drop", "deep", "repeat", "key"]))
        if kind == "value":
            parent[path[-1]] = draw(json_values)
        elif kind == "drop":
            del parent[path[-1]]
        elif kind == "deep":  # a placeholder, replaced by the nested text once the rest is encoded
            depth = draw(st.sampled_from([50, 500, 5_000]))
            opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
            deep.append(opener * depth + "1" + closer * depth)
            parent[path[-1]] = f"DEEP{len(deep) - 1}"
        elif kind == "repeat" and isinstance(parent, list):
            parent.append(parent[path[-1]])
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(json_values)
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    for index, nested in enumerate(deep):
        text = text.replace(f'"DEEP{index}"', nested)
    return text.encode()


def resigned(edge: Edge, token: str, payload: bytes) -> str:
    header = json.loads(_unb64(token.split(".")[0]) or b"{}")
    headers = {k: v for k, v in header.items() if k not in ("alg",)}
    return _JWS.encode(
        payload, edge.signer_key, algorithm=signing_algorithm(edge.signer_key), headers=headers
    )


def _payload(token: str) -> dict[str, Any]:
    return json.loads(_unb64(token.split(".")[1]) or b"{}")


# -- the targets -------------------------------------------------------------------------------
_COUNTER = iter(range(10**9))


@fuzz_settings(scale=0.5)
@given(data=st.data())
def test_mutated_bundles_are_refused_with_a_reason_never_an_exception(edge, data):
    signed = data.draw(st.booleans())
    if signed:
        token = resigned(edge, edge.bundle, data.draw(mangled_payloads(_payload(edge.bundle))))
    else:
        token = data.draw(text_mutations(edge.bundle))
    with tempfile.TemporaryDirectory(dir=edge.directory) as state:
        with Gatekeeper(
            "reactor-1", edge.roots, Path(state), clock=lambda: MORNING, trail_sync="batch"
        ) as gatekeeper:
            outcome = gatekeeper.install_bundle(token)
    event(f"{'re-signed' if signed else 'text'}: {'installed' if outcome.installed else 'refused'}")
    if not outcome.installed:
        assert outcome.reason
    elif not signed:
        assert same_content(token, edge.bundle), "a bundle whose signature does not cover it was installed"


@pytest.fixture(scope="module")
def gatekeeper(edge: Edge) -> Iterator[Gatekeeper]:
    with edge.gatekeeper("exchange") as made:
        assert made.install_bundle(edge.bundle).installed
        yield made


@fuzz_settings(scale=0.5)
@given(data=st.data())
def test_mutated_credentials_get_no_access_and_raise_nothing(edge, gatekeeper, data):
    signed = data.draw(st.booleans())
    if signed:
        token = resigned(edge, edge.credential, data.draw(mangled_payloads(_payload(edge.credential))))
    else:
        token = data.draw(text_mutations(edge.credential))
    function = data.draw(st.sampled_from(["start"] * 4 + ["read-data", "enter", "x" * 200, "", "st art"]))
    try:
        challenge = gatekeeper.challenge(token, function, source=f"192.0.2.{next(_COUNTER) % 250}")
    except OtwardError as exc:
        event(f"challenge refused: {exc.rule}")
        return
    verdict = gatekeeper.answer(
        challenge.nonce, sign_data(edge.holder, answer_message("reactor-1", function, challenge.nonce))
    )
    event(f"{'re-signed' if signed else 'text'}: {'allowed' if verdict.allowed else 'denied'}")
    assert verdict.reason
    if verdict.allowed and not signed:
        assert same_content(token, edge.credential), (
            "a credential whose signature does not cover it got access"
        )

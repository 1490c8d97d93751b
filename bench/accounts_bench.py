"""Named accounts: what the account check adds to every API request, and what a sign-in costs.

Prints, each next to its reference on the same machine and as a ratio:
  * API token checks per second with the account's roles (authenticate, read the account, decide
    scope ∩ roles), next to the same token checked against its scope alone (the path before accounts);
  * sign-ins per second (Argon2id verify, lock-out bookkeeping, audit event), next to a bare Argon2id
    verify with the same parameters;
  * the median time of a failed sign-in for an unknown account and for a wrong password (the two must
    look alike: the unknown account is checked against a dummy hash).

Run:  python bench/accounts_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from argon2 import PasswordHasher

from otward.config import load_settings
from otward.core.authz import Action, Area, Permission, Scope, is_permitted, parse_grant
from otward.errors import AuthenticationError
from otward.services.audit import Actor
from otward.services.bootstrap import initialize
from otward.services.pki import Pki

PASSWORD = "correct horse battery staple"  # noqa: S105 - a benchmark's throwaway account
NEEDED = Permission(Area.PKI, Action.READ)


def _rate(n: int, action: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(n):
        action()
    return n / (time.perf_counter() - start)


def _median_ms(n: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    checks, signins = (2000, 20) if args.quick else (10000, 60)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        initialize(data)
        pki = Pki.open(load_settings(data))
        try:
            pki.accounts.add("alice", frozenset({parse_grant("pki-officer")}), password=PASSWORD)
            _, text = pki.tokens.create("bench", scope=Scope.ADMIN, account="alice")
            actor = Actor(component="bench", identity="bench", source="192.0.2.1")

            def with_roles() -> None:
                token = pki.tokens.authenticate(text, actor)
                pki.tokens.authorize(token, NEEDED, actor)

            def scope_only() -> None:
                token = pki.tokens.authenticate(text, actor)
                if not is_permitted(token.scope, NEEDED):
                    raise AssertionError

            rates = {name: [] for name in ("roles", "scope")}  # type: dict[str, list[float]]
            for _ in range(3):
                rates["roles"].append(_rate(checks, with_roles))
                rates["scope"].append(_rate(checks, scope_only))
            roles, scope = (statistics.median(rates[k]) for k in ("roles", "scope"))
            print(
                f"token check with roles   {roles:8.0f}/s   scope only {scope:8.0f}/s"
                f"   ratio {roles / scope:.2f}"
            )

            hasher = PasswordHasher()
            stored = hasher.hash(PASSWORD)
            sign_in = _rate(signins, lambda: pki.accounts.sign_in("alice", PASSWORD, None, actor))
            bare = _rate(signins, lambda: hasher.verify(stored, PASSWORD))
            print(
                f"sign-in                  {sign_in:8.1f}/s   bare Argon2id verify {bare:8.1f}/s"
                f"   ratio {sign_in / bare:.2f}"
            )

            def fail(name: str, password: str) -> Callable[[], None]:
                def attempt() -> None:
                    try:
                        pki.accounts.sign_in(name, password, None, actor)
                    except AuthenticationError:
                        pass
                    else:
                        raise AssertionError

                return attempt

            pki.accounts.add("bob", frozenset({parse_grant("auditor")}), password=PASSWORD)
            unknown = _median_ms(signins, fail("nobody", PASSWORD))
            wrong = _median_ms(4, fail("bob", "wrong password!"))  # under the lock-out threshold
            print(
                f"failed sign-in, unknown  {unknown:8.1f} ms   wrong password {wrong:8.1f} ms"
                f"   ratio {unknown / wrong:.2f}"
            )
        finally:
            pki.close()


if __name__ == "__main__":
    main()

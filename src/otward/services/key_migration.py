"""``otward ca migrate-keys --to pkcs11``: an installation's key files moved into a PKCS#11 token.

Each file key is unwrapped into the token (sensitive, non-extractable) and checked to hold
the same public key; then ``config.toml`` is switched to the token, the database's key
references are replaced in one transaction (audited as ``ca.key_moved``), and the files are
overwritten and deleted. A crash at any point leaves an installation that works: before
the database changes, the files are still what it uses (the router loads ``file:``
references with the file backend whatever ``[keys]`` says); after, the token is.

A token that refuses to import keys gets nothing: what was imported is destroyed again and
the error explains the rollover instead (new keys made in the token, docs/hsm.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from otward.adapters.keys import FileKeyBackend, RoutingKeyBackend
from otward.adapters.keys.pkcs11 import Pkcs11KeyBackend, resolve_pin
from otward.config import KeySettings, write_key_settings
from otward.core.audit import EventType
from otward.errors import ConfigError, OtwardError, SignerError
from otward.services.audit import Actor
from otward.services.pki import Pki

__all__ = ["ROLLOVER_HINT", "MovedKey", "migrate_keys_to_pkcs11"]

ROLLOVER_HINT = (
    "if the token refuses to import keys, make new keys in it instead: configure [keys] for the token, "
    "create a new issuing CA under the root ('otward ca create NAME --parent root'), rotate the signers "
    "('otward signer rotate audit|edge') and retire the old CA; for a new root, cross-sign (docs/hsm.md, "
    "'Tokens that refuse key import')"
)


@dataclass(frozen=True)
class MovedKey:
    old_ref: str
    new_ref: str


def migrate_keys_to_pkcs11(pki: Pki, target: KeySettings, actor: Actor) -> list[MovedKey]:
    """Move every ``file:`` CA, responder and signer key of ``pki`` into the token of ``target``."""
    if target.backend != "pkcs11" or target.pkcs11_module is None or target.pkcs11_token is None:
        raise ConfigError("migrate-keys needs a PKCS#11 module and token", rule="key-backend")
    router = pki.keys
    files = router.backend("file") if isinstance(router, RoutingKeyBackend) else router
    if not isinstance(router, RoutingKeyBackend) or not isinstance(files, FileKeyBackend):
        raise ConfigError("this installation has no file key backend to move keys from", rule="key-backend")
    old_refs = list(dict.fromkeys(r for r in pki.stores.key_refs.key_refs() if r.startswith("file:")))
    pin_file = target.pkcs11_pin_file
    token = Pkcs11KeyBackend(target.pkcs11_module, target.pkcs11_token, lambda: resolve_pin(pin_file))
    moved: list[MovedKey] = []
    attached = False
    try:
        token.open()
        try:
            for old_ref in old_refs:
                label = Path(old_ref.removeprefix("file:")).name.removesuffix(".key.pem")
                moved.append(MovedKey(old_ref, token.token.import_key(files.load_key(old_ref), label)))
        except OtwardError as exc:
            for imported in moved:
                token.destroy_key(imported.new_ref)
            raise SignerError(f"{exc.message}; nothing was moved. {ROLLOVER_HINT}") from exc
        write_key_settings(pki.settings.data_dir, target)
        events = [
            pki.audit.event(
                actor,
                EventType.CA_KEY_MOVED,
                move.new_ref,
                details={"from": move.old_ref, "to": move.new_ref, "token": target.pkcs11_token},
            )
            for move in moved
        ]
        if moved:
            pki.stores.key_refs.replace_key_refs({m.old_ref: m.new_ref for m in moved}, events)
        router.attach("pkcs11", token)  # what this process signs from now on (the audit head at close)
        attached = True
        for move in moved:
            files.destroy_key(move.old_ref)
    finally:
        if not attached:
            token.close()
    return moved

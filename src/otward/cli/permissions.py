"""What each command needs: the CLI's half of the one authorization table (:mod:`otward.core.authz`).

Every command of ``otward`` has an entry (a test walks the command tree, so a new command without
one fails it). A command run with ``--as NAME`` is checked against the account's roles in
:func:`otward.cli.common.open_pki`, the one door every command goes through to the installation;
a command with no entry there is refused to an account. ``LOCAL`` marks commands that act on this
host rather than as an account on the installation (``init``, ``serve``, the agent, the gateway):
they run as whoever runs them, and ``--as`` is refused where they open the installation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from otward.core.authz import Action, Area, Permission

__all__ = ["APPROVAL_AREAS", "APPROVAL_COMMANDS", "COMMANDS", "LOCAL", "SELF_SERVICE", "is_local_group"]

LOCAL: Final = None

_R, _W = Action.READ, Action.WRITE


def _p(area: Area, action: Action) -> Permission:
    return Permission(area, action)


PKI_READ, PKI_WRITE = _p(Area.PKI, _R), _p(Area.PKI, _W)
ENROLL_READ, ENROLL_WRITE = _p(Area.ENROLLMENT, _R), _p(Area.ENROLLMENT, _W)
ACCESS_READ, ACCESS_WRITE = _p(Area.ACCESS, _R), _p(Area.ACCESS, _W)
AUDIT_READ = _p(Area.AUDIT, _R)
ADMIN_READ, ADMIN_WRITE = _p(Area.ADMIN, _R), _p(Area.ADMIN, _W)

COMMANDS: Mapping[str, Permission | None] = {
    # this host, not an account on the installation
    "init": LOCAL,
    "serve": LOCAL,
    "gateway": LOCAL,
    "db upgrade": LOCAL,
    "agent attest": LOCAL,
    "agent enroll": LOCAL,
    "agent renew": LOCAL,
    "agent run": LOCAL,
    "agent status": LOCAL,
    "assess modbus": LOCAL,  # network checks and reports: no installation
    "assess opcua": LOCAL,
    "assess report": LOCAL,
    "assess tls": LOCAL,
    "assess self": LOCAL,  # reads the data directory itself: local root mode only
    "backup": LOCAL,  # the whole installation, keys included: whoever can read the data directory
    "restore": LOCAL,  # makes a new installation, like init
    "doctor": LOCAL,  # reads the data directory itself
    "deploy systemd": LOCAL,
    "firmware boot-chain": LOCAL,
    "firmware sign": LOCAL,
    "firmware verify": LOCAL,
    "edge serve": LOCAL,
    "edge decide": LOCAL,
    # accounts, roles and the tokens that act for them
    "admin add": ADMIN_WRITE,
    "admin list": ADMIN_READ,
    "admin disable": ADMIN_WRITE,
    "admin enable": ADMIN_WRITE,
    "admin remove": ADMIN_WRITE,
    "admin passwd": ADMIN_WRITE,
    "admin roles": ADMIN_WRITE,
    "admin token": ADMIN_WRITE,
    "admin totp": ADMIN_WRITE,
    "api-token create": ADMIN_WRITE,
    "api-token list": ADMIN_READ,
    "api-token revoke": ADMIN_WRITE,
    # CAs, certificates, revocation, signers
    "ca create": PKI_WRITE,
    "ca export": PKI_READ,
    "ca list": PKI_READ,
    "ca migrate-keys": PKI_WRITE,
    "ca pin": PKI_READ,
    "ca import-cert": PKI_WRITE,
    "ca renew": PKI_WRITE,
    "ca revoke": PKI_WRITE,
    "ca rollover": PKI_WRITE,
    "ca sign-csr": PKI_WRITE,
    # manufacturers' IDevID CAs are trust anchors for every owner: a PKI decision
    "manufacturer add": PKI_WRITE,
    "manufacturer crl": PKI_WRITE,
    "manufacturer list": PKI_READ,
    "manufacturer remove": PKI_WRITE,
    "cert issue": PKI_WRITE,
    "cert list": PKI_READ,
    "cert revoke": PKI_WRITE,
    "cert show": PKI_READ,
    "crl generate": PKI_WRITE,
    "signer list": PKI_READ,
    "signer rotate": PKI_WRITE,
    "log consistency": PKI_READ,
    "log proof": PKI_READ,
    "log sth": PKI_READ,
    "mqtt-config": PKI_READ,
    "opcua trustlist": PKI_READ,
    "audit sign": PKI_WRITE,  # signs the trail's head with the audit signer
    # owners, enrollment tokens, devices
    "owner create": ENROLL_WRITE,
    "owner list": ENROLL_READ,
    "owner set": ENROLL_WRITE,
    "token create": ENROLL_WRITE,
    "token list": ENROLL_READ,
    "token revoke": ENROLL_WRITE,
    "device disable": ENROLL_WRITE,
    "device enable": ENROLL_WRITE,
    "device list": ENROLL_READ,
    "device preprovision": ENROLL_WRITE,
    "device reset": ENROLL_WRITE,
    "device revoke": ENROLL_WRITE,
    "device show": ENROLL_READ,
    "device claim": ENROLL_WRITE,
    "device claims": ENROLL_READ,
    "device release": ENROLL_WRITE,
    # the access model, bundles, holder credentials, edge tokens
    "access asset add": ACCESS_WRITE,
    "access asset list": ACCESS_READ,
    "access asset remove": ACCESS_WRITE,
    "access asset show": ACCESS_READ,
    "access asset update": ACCESS_WRITE,
    "access bundle": ACCESS_WRITE,
    "access credential issue": ACCESS_WRITE,
    "access credential list": ACCESS_READ,
    "access credential revoke": ACCESS_WRITE,
    "access explain": ACCESS_READ,
    "access grant add": ACCESS_WRITE,
    "access grant list": ACCESS_READ,
    "access grant remove": ACCESS_WRITE,
    "access import": ACCESS_WRITE,
    "access person add": ACCESS_WRITE,
    "access person disable": ACCESS_WRITE,
    "access person enable": ACCESS_WRITE,
    "access person list": ACCESS_READ,
    "access person remove": ACCESS_WRITE,
    "access person show": ACCESS_READ,
    "access policies": ACCESS_READ,
    "access role add": ACCESS_WRITE,
    "access role list": ACCESS_READ,
    "access role remove": ACCESS_WRITE,
    "access role update": ACCESS_WRITE,
    "access schedule add": ACCESS_WRITE,
    "access schedule list": ACCESS_READ,
    "access schedule remove": ACCESS_WRITE,
    "access schedule update": ACCESS_WRITE,
    "access schema": ACCESS_READ,
    "edge token create": ACCESS_WRITE,
    "edge token list": ACCESS_READ,
    "edge token revoke": ACCESS_WRITE,
    "edge trail": ACCESS_READ,
    # four-eyes approval: the entry is the least an account needs to be let in (read or write of an
    # area with gated operations, PKI or admin: APPROVAL_COMMANDS); each request is then decided on
    # its own operation's permission (otward.core.approvals.OPERATION_PERMISSIONS)
    "approvals list": PKI_READ,
    "approvals show": PKI_READ,
    "approvals approve": PKI_WRITE,
    "approvals reject": PKI_WRITE,
    # the audit trail
    "audit export": AUDIT_READ,
    "audit list": AUDIT_READ,
    "audit verify": AUDIT_READ,
    # notifications: what is queued, a check run now, a test message to every channel
    "notify check": AUDIT_READ,
    "notify list": AUDIT_READ,
    "notify test": AUDIT_READ,
}


APPROVAL_COMMANDS: Mapping[str, Action] = {
    "approvals list": _R,
    "approvals show": _R,
    "approvals approve": _W,
    "approvals reject": _W,
}
"""Commands an account may run holding ``action`` on any area with gated operations (PKI or admin):
which requests it sees and decides is then a matter of each request's own permission."""

APPROVAL_AREAS = (Area.PKI, Area.ADMIN)

SELF_SERVICE: frozenset[str] = frozenset({"admin passwd", "admin totp"})
"""Commands an account signed in with ``--as`` may run on itself (``NAME`` its own name) without
the ``admin`` role: a new password, a new TOTP secret. Anyone else's needs ``admin``."""


def is_local_group(name: str | None) -> bool:
    """True when every command under the top-level command ``name`` is ``LOCAL`` (``init``, ``db``,
    ``agent``...): ``--as`` is refused for them before they start, whether or not they open the
    installation."""
    entries = [
        p
        for path, p in COMMANDS.items()
        if name is not None and (path == name or path.startswith(f"{name} "))
    ]
    return bool(entries) and all(p is LOCAL for p in entries)

"""The sentence the console shows for each gated operation names what will be done and to what."""

from __future__ import annotations

import pytest

from otward.core.approvals import Operation, describe


@pytest.mark.parametrize(
    ("operation", "parameters", "expected"),
    [
        (
            Operation.CA_CREATE,
            {
                "name": "plant-a",
                "parent": "root",
                "key_type": "ec-p256",
                "organization": "ACME",
                "path_length": 0,
                "permitted_dns": ["plant-a.example"],
                "permitted_ip": [],
            },
            "Create the subordinate CA plant-a under root (ec-p256 key, organization ACME; limited to"
            " path length 0; DNS names under plant-a.example)",
        ),
        (
            Operation.CA_CREATE,
            {"name": "b", "parent": "root", "key_type": "ed25519", "organization": "X", "path_length": None},
            "Create the subordinate CA b under root (ed25519 key, organization X)",
        ),
        (
            Operation.CA_CREATE,
            {"name": "c", "parent": "root", "permitted_ip": ["10.0.0.0/8"]},
            "Create the subordinate CA c under root (? key, organization ?;"
            " limited to addresses in 10.0.0.0/8)",
        ),
        (
            Operation.CA_REVOKE,
            {"name": "plant-a", "reason": "keyCompromise"},
            "Revoke the CA plant-a (reason keyCompromise)",
        ),
        (
            Operation.SIGNER_ROTATE_REVOKE,
            {"name": "ocsp", "reason": "superseded"},
            "Rotate the ocsp signer to a new key and certificate and revoke the previous certificate"
            " (reason superseded)",
        ),
        (
            Operation.ACCOUNT_ADD,
            {"name": "bob", "roles": ["admin", "pki-officer"]},
            "Add the account bob with the roles admin, pki-officer",
        ),
        (
            Operation.ACCOUNT_ROLES,
            {"name": "bob", "roles": []},
            "Set the roles of the account bob to none",
        ),
        (Operation.CA_REVOKE, {}, "Revoke the CA ? (reason ?)"),
    ],
    ids=[
        "ca-create-limited",
        "ca-create-plain",
        "ca-create-missing",
        "ca-revoke",
        "signer",
        "add",
        "roles",
        "missing",
    ],
)
def test_each_operation_reads_as_a_sentence(operation, parameters, expected):
    assert describe(operation, parameters) == expected

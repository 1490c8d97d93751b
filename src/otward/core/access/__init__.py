"""Access model of a site and its decisions by Cedar (issue 6).

``model`` holds the values and the YAML format, ``policies`` compiles them to Cedar, ``decision``
decides one request at one asset from a parsed :class:`AccessSlice`.
"""

from otward.core.access.decision import AccessSlice, Decider, Decision, local_context
from otward.core.access.model import (
    AccessModel,
    Asset,
    AssetKind,
    Grant,
    Person,
    PersonKind,
    Role,
    Schedule,
    parse_access_yaml,
    validate_model,
)
from otward.core.access.policies import asset_slice, cedar_schema, compile_policies, policy_set_text

__all__ = [
    "AccessModel",
    "AccessSlice",
    "Asset",
    "AssetKind",
    "Decider",
    "Decision",
    "Grant",
    "Person",
    "PersonKind",
    "Role",
    "Schedule",
    "asset_slice",
    "cedar_schema",
    "compile_policies",
    "local_context",
    "parse_access_yaml",
    "policy_set_text",
    "validate_model",
]

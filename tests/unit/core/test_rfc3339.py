"""Timestamps in JSON output are RFC 3339."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta, timezone

from otward.core.rfc3339 import format_rfc3339, json_default

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def test_times_are_utc_with_a_t_and_a_z():
    assert format_rfc3339(datetime(2026, 12, 14, 6, 42, 56, tzinfo=UTC)) == "2026-12-14T06:42:56Z"
    plus_one = timezone(timedelta(hours=1))
    assert (
        format_rfc3339(datetime(2026, 12, 14, 7, 42, 56, 5, tzinfo=plus_one)) == "2026-12-14T06:42:56.000005Z"
    )
    assert format_rfc3339(datetime(2026, 12, 14, 6, 42, 56)) == "2026-12-14T06:42:56Z"  # naive: UTC


def test_the_json_encoder_writes_what_str_did_not():
    value = {"expires_at": datetime(2026, 12, 14, 6, 42, 56, tzinfo=UTC), "day": date(2026, 12, 14)}
    encoded = json.loads(json.dumps(value, default=json_default))
    assert RFC3339.match(encoded["expires_at"])
    assert encoded == {"expires_at": "2026-12-14T06:42:56Z", "day": "2026-12-14"}
    assert not RFC3339.match(str(value["expires_at"]))  # what the CLI printed before

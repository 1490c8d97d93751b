"""Endpoint security assessment along IEC 62443-4-2: findings as data, the requirement table, accepted risks.

Scanners (adapters) and firmware checks produce :class:`Finding` values; the report, a CI pipeline and the
console all read the same versioned JSON document (:data:`SCHEMA_VERSION`).
"""

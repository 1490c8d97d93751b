"""Network probes of ``otward assess``: they record what an endpoint does; the core judges it."""

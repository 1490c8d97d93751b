"""What every otward web server shares (the central service in :mod:`otward.http`, the gatekeeper in
:mod:`otward.edge`): errors as problem+json, body limits, trusted proxies. Nothing here knows the PKI,
so the gatekeeper runs without the central service's modules."""

"""The edge gatekeeper at an asset: token formats, local state and trail, sync, local HTTP API."""

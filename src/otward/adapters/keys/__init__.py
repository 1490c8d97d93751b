"""Key backends: where CA and responder signing keys live (files, or a PKCS#11 token)."""

from otward.adapters.keys.file import FileKeyBackend, generate_private_key, write_private_file
from otward.adapters.keys.routing import RoutingKeyBackend

__all__ = ["FileKeyBackend", "RoutingKeyBackend", "generate_private_key", "write_private_file"]

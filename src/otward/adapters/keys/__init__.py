"""Key backends: where CA and responder signing keys live."""

from otward.adapters.keys.file import FileKeyBackend, generate_private_key, write_private_file

__all__ = ["FileKeyBackend", "generate_private_key", "write_private_file"]

"""A TLS client key that stays in a PKCS#11 token, for Python's ``ssl``: the factory identity
(IEEE 802.1AR IDevID) of a device whose chip holds it.

Python's ``ssl`` loads private keys only from files. On Debian 12 the one way to give an
``SSLContext`` a token key is OpenSSL's ``pkcs11`` engine (libp11, Debian package
``libengine-pkcs11-openssl``; the pkcs11-provider of OpenSSL 3 is not packaged for Debian 12):
the engine loads the key by RFC 7512 URI as an ``EVP_PKEY`` whose every signature is made on the
token, and ``SSL_CTX_use_PrivateKey`` hands it to the context. Both calls are made with ``ctypes``
on the very ``libssl``/``libcrypto`` the ``_ssl`` module is linked to — checked by comparing their
version strings — and on the context's ``SSL_CTX`` pointer, which CPython keeps as the first
field after the object header (``PySSLContext``, unchanged since 3.x) — checked by reading the
context's options through it before anything is written. Any mismatch is a clear error, never a
guess.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import ssl
import threading
import urllib.parse
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from otward.errors import ConfigError, SignerError

__all__ = ["ENGINE_ID", "key_uri", "use_token_key"]

ENGINE_ID = b"pkcs11"
_lock = threading.Lock()
_keep: list[object] = []  # engines and keys in use by live contexts: never freed under them


def _library(name: str) -> ctypes.CDLL:
    try:
        return ctypes.CDLL(name)
    except OSError as exc:
        raise ConfigError(f"cannot load {name}: {exc}", rule="pkcs11-engine") from exc


def _libraries() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    crypto, libssl = _library("libcrypto.so.3"), _library("libssl.so.3")
    crypto.OpenSSL_version.restype = ctypes.c_char_p
    crypto.OpenSSL_version.argtypes = [ctypes.c_int]
    loaded = (crypto.OpenSSL_version(0) or b"").decode()
    if loaded != ssl.OPENSSL_VERSION:
        raise ConfigError(
            f"Python's ssl uses {ssl.OPENSSL_VERSION}, the system library is {loaded}: a token key cannot"
            " be given to this interpreter's TLS",
            rule="pkcs11-engine",
        )
    crypto.ENGINE_by_id.restype = ctypes.c_void_p
    crypto.ENGINE_by_id.argtypes = [ctypes.c_char_p]
    crypto.ENGINE_ctrl_cmd_string.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    crypto.ENGINE_init.argtypes = [ctypes.c_void_p]
    crypto.ENGINE_free.argtypes = [ctypes.c_void_p]
    crypto.ENGINE_load_private_key.restype = ctypes.c_void_p
    crypto.ENGINE_load_private_key.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    crypto.ERR_clear_error.argtypes = []
    libssl.SSL_CTX_get_options.restype = ctypes.c_uint64
    libssl.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
    libssl.SSL_CTX_use_certificate_ASN1.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p]
    libssl.SSL_CTX_use_PrivateKey.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    libssl.SSL_CTX_check_private_key.argtypes = [ctypes.c_void_p]
    return crypto, libssl


def _ssl_ctx(context: ssl.SSLContext, libssl: ctypes.CDLL) -> int:
    """The context's ``SSL_CTX *``, after checking that it is one: its options read back equal."""
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if not pointer or libssl.SSL_CTX_get_options(pointer) != int(context.options):
        raise ConfigError(
            "this Python's SSLContext does not have the expected layout; a token key cannot be used",
            rule="pkcs11-engine",
        )
    return int(pointer)


def key_uri(token_label: str, key_label: str) -> str:
    """RFC 7512 URI of a private key, by token and object label."""
    quote = urllib.parse.quote
    return f"pkcs11:token={quote(token_label, safe='')};object={quote(key_label, safe='')};type=private"


def use_token_key(
    context: ssl.SSLContext,
    *,
    module: Path,
    token_label: str,
    key_label: str,
    pin: str,
    certificate: x509.Certificate,
) -> None:
    """Make ``context`` present ``certificate`` with the token's private key ``key_label`` as TLS
    client identity. Raises ConfigError when the engine or this interpreter cannot, SignerError when
    the token refuses or its key is not the certificate's."""
    crypto, libssl = _libraries()
    pointer = _ssl_ctx(context, libssl)
    with _lock:
        crypto.ERR_clear_error()
        engine = crypto.ENGINE_by_id(ENGINE_ID)
        if not engine:
            raise ConfigError(
                "OpenSSL's pkcs11 engine is not installed (Debian: libengine-pkcs11-openssl)",
                rule="pkcs11-engine",
            )
        ok = crypto.ENGINE_ctrl_cmd_string(engine, b"MODULE_PATH", str(module).encode(), 0)
        if not ok or not crypto.ENGINE_init(engine):
            crypto.ENGINE_free(engine)
            raise SignerError(f"the pkcs11 engine cannot use module {module}")
        crypto.ENGINE_ctrl_cmd_string(engine, b"PIN", pin.encode(), 0)
        key = crypto.ENGINE_load_private_key(engine, key_uri(token_label, key_label).encode(), None, None)
        if not key:
            raise SignerError(f"no private key '{key_label}' on token '{token_label}' for TLS")
        der = certificate.public_bytes(Encoding.DER)
        if libssl.SSL_CTX_use_certificate_ASN1(pointer, len(der), der) != 1:
            raise SignerError("the factory certificate could not be set for TLS")
        if libssl.SSL_CTX_use_PrivateKey(pointer, key) != 1 or libssl.SSL_CTX_check_private_key(pointer) != 1:
            raise SignerError(f"key '{key_label}' on token '{token_label}' is not the certificate's key")
        crypto.ERR_clear_error()
        _keep.extend((engine, key))

"""Ed25519 signature of a bundle: the configured public key, and the check of ``manifest.sig``.

The signature covers the exact bytes of ``manifest.json``, which records the SHA-256 and size of every other
member, so a valid signature covers the whole bundle. The ``cryptography`` package is imported only when a key is
used (hand-written Ed25519 would be a liability).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from edge.bundle.archive import SIGNATURE
from edge.errors import BundleError

__all__ = ["load_public_key", "verify_signature"]

_ED25519_SIGNATURE_BYTES: Final[int] = 64
_ED25519_PUBLIC_BYTES: Final[int] = 32


def load_public_key(public_key: Any) -> Any:
    """Turn a configured public key into an Ed25519 public key object of ``cryptography``.

    Parameters
    ----------
    public_key : bytes, str, Path or Ed25519PublicKey
        PEM bytes or text (``-----BEGIN PUBLIC KEY-----``), 32 raw key bytes, or the path of a PEM file.

    Raises
    ------
    BundleError
        Unreadable file, not an Ed25519 key, or ``cryptography`` not installed.
    """
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
    except ImportError as exc:  # pragma: no cover - cryptography is a dependency
        raise BundleError("signature verification needs the 'cryptography' package, which is not installed") from exc
    if isinstance(public_key, Ed25519PublicKey):
        return public_key
    data: bytes
    if isinstance(public_key, (str, Path)):
        text = str(public_key)
        if text.lstrip().startswith("-----BEGIN"):
            data = text.encode("ascii", errors="replace")
        else:
            try:
                data = Path(text).read_bytes()
            except OSError as exc:
                raise BundleError(f"public key {text}: cannot be read: {exc.strerror or exc}") from exc
    elif isinstance(public_key, (bytes, bytearray)):
        data = bytes(public_key)
    else:
        raise BundleError(f"expected the public key as PEM bytes/text or a file path, got {type(public_key).__name__}")
    if len(data) == _ED25519_PUBLIC_BYTES and not data.startswith(b"-----"):
        return Ed25519PublicKey.from_public_bytes(data)
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"public key: not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"expected an Ed25519 public key, got {type(key).__name__}")
    return key


def verify_signature(manifest_bytes: bytes, signature: bytes | None, public_key: Any) -> None:
    """Check the Ed25519 signature of ``manifest.json`` with the configured key.

    Raises
    ------
    BundleError
        The signature is missing, malformed or does not verify.
    """
    key = load_public_key(public_key)
    if signature is None:
        raise BundleError(f"member {SIGNATURE}: missing, but a public key is configured (the bundle is not signed)")
    if len(signature) != _ED25519_SIGNATURE_BYTES:
        raise BundleError(
            f"member {SIGNATURE}: expected a {_ED25519_SIGNATURE_BYTES}-byte Ed25519 signature, "
            f"got {len(signature)} bytes"
        )
    from cryptography.exceptions import InvalidSignature

    try:
        key.verify(signature, manifest_bytes)
    except InvalidSignature as exc:
        raise BundleError(
            f"member {SIGNATURE}: bad signature (manifest.json was not signed by the configured key)"
        ) from exc

"""The rule of remote deployment: a bundle that came over MQTT is installed only when ``manifest.sig`` is a valid
Ed25519 signature of its ``manifest.json`` by one of the trusted keys, whatever the local policy
(``bundle.public_key_path`` may be unset and let unsigned bundles in when copied by hand; never over the wire)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from edge.bundle.archive import MANIFEST, SIGNATURE, read_members
from edge.bundle.signature import load_public_key
from edge.deploy.staging import DeployError
from edge.errors import BundleError

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from edge.config import EdgeConfig

__all__ = ["trusted_keys_of", "signing_key"]


def trusted_keys_of(config: "EdgeConfig") -> tuple[Path, ...]:
    """The keys a sent bundle may be signed with: ``deploy.trusted_keys``, else ``bundle.public_key_path``."""
    if config.deploy.trusted_keys:
        return tuple(config.deploy.trusted_keys)
    return (config.bundle.public_key_path,) if config.bundle.public_key_path is not None else ()


def signing_key(path: Path, keys: Sequence[Path]) -> Path:
    """The trusted key (one of ``keys``) whose signature ``manifest.sig`` of bundle ``path`` is.

    Raises
    ------
    DeployError
        Not a readable bundle, not signed, or signed by none of ``keys``.
    """
    from cryptography.exceptions import InvalidSignature

    if not keys:
        raise DeployError("no trusted key is configured (deploy.trusted_keys or bundle.public_key_path): a bundle "
                          "sent over MQTT cannot be accepted")
    try:
        members, _ = read_members(path)
    except BundleError as exc:
        raise DeployError(f"the received file is not a readable bundle: {exc}") from exc
    signature = members.get(SIGNATURE)
    if signature is None:
        raise DeployError(f"expected a bundle signed (Ed25519, {SIGNATURE}) by a trusted key: a bundle sent over "
                          "MQTT must be signed whatever bundle.public_key_path allows, got an unsigned bundle")
    for key_path in keys:
        try:
            load_public_key(key_path).verify(signature, members[MANIFEST])
        except (InvalidSignature, ValueError):
            continue
        return key_path
    raise DeployError(f"expected {SIGNATURE} by one of the {len(keys)} trusted key(s), got a signature none of them "
                      "verifies (signed by another key, or the manifest was changed)")

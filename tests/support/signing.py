"""Ed25519 signing keys made for a test, and signed copies of the committed (unsigned) trainer-built bundles, the
way ``spectro-train sign`` signs them (``manifest.sig`` over the exact ``manifest.json`` bytes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support.bundles import read_zip, write_zip


@dataclass(frozen=True)
class SigningKey:
    """A private key and the PEM file of its public half (what a device trusts)."""

    private: object
    public_pem: Path


def make_signing_key(directory: Path, name: str = "signer") -> SigningKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.generate()
    pem = directory / f"{name}.pub.pem"
    pem.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return SigningKey(key, pem)


def signed_copy(source: Path, target: Path, key: SigningKey) -> Path:
    """``source`` with ``manifest.sig`` added (or replaced), written to ``target``."""
    members = read_zip(source)
    members["manifest.sig"] = key.private.sign(members["manifest.json"])  # type: ignore[attr-defined]  # private is typed object: an Ed25519 private key here
    return write_zip(target, members)

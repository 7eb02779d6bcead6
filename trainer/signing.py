"""Signing of the lab side: sign a ``.spectrolite`` bundle and make Ed25519 signing keys (PEM files).

Signing uses Ed25519 from the ``cryptography`` package. The signature covers the bundle's ``manifest.json`` bytes
(format in ``docs/bundle.md``); a signed bundle is verified by :func:`edge.bundle.load_bundle` with the matching
public key before it replaces the unsigned one. :mod:`trainer.bundle` re-exports :func:`sign_bundle` and
:func:`generate_keypair`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from edge.bundle import MANIFEST, SIGNATURE, read_members
from edge.errors import BundleError
from trainer.bundle_zip import commit_bundle, temp_path_for, write_zip
from trainer.errors import BundleWriteError

__all__ = ["sign_bundle", "generate_keypair", "load_private_key"]

log = logging.getLogger(__name__)


def load_private_key(private_key_path: str | Path) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    p = Path(private_key_path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise BundleWriteError(f"private key {p}: cannot be read: {exc.strerror or exc}") from exc
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise BundleWriteError(f"private key {p}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleWriteError(f"private key {p}: expected an Ed25519 key, got {type(key).__name__}")
    return key


def sign_bundle(path: str | Path, private_key_path: str | Path) -> Path:
    """Add (or replace) ``manifest.sig``: an Ed25519 signature over the bundle's ``manifest.json`` bytes.

    The bundle is first read with the structural checks, re-written with the signature into a temporary file,
    verified with the matching public key by :func:`edge.bundle.load_bundle` (self-test included) and then
    atomically moved over ``path``.

    Parameters
    ----------
    path : str or Path
        Bundle to sign.
    private_key_path : str or Path
        Unencrypted PEM Ed25519 private key (see :func:`generate_keypair`).

    Returns
    -------
    Path
        The signed bundle.

    Raises
    ------
    BundleWriteError
        Unreadable key or bundle, or the signed bundle fails the check.
    """
    final = Path(path)
    key = load_private_key(private_key_path)
    try:
        members, _ = read_members(final)
    except BundleError as exc:
        raise BundleWriteError(f"cannot sign: {exc}") from exc
    members = dict(members)
    members[SIGNATURE] = key.sign(members[MANIFEST])
    tmp = temp_path_for(final)
    try:
        write_zip(tmp, members)
        commit_bundle(tmp, final, key.public_key())
    finally:
        tmp.unlink(missing_ok=True)
    log.info("signed bundle %s", final)
    return final


def generate_keypair(out_dir: str | Path, *, name: str = "spectrolite", overwrite: bool = False) -> tuple[Path, Path]:
    """Create an Ed25519 key pair as PEM files: ``<name>.key.pem`` (private, mode 0600) and ``<name>.pub.pem``.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write into (created when missing).
    name : str
        File name stem.
    overwrite : bool
        Replace existing files (default: refuse).

    Returns
    -------
    (private_path, public_path) : tuple of Path
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / f"{name}.key.pem"
    public_path = directory / f"{name}.pub.pem"
    for p in (private_path, public_path):
        if p.exists() and not overwrite:
            raise BundleWriteError(f"{p} already exists; refusing to overwrite a key (pass overwrite=True)")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        encoding=serialization.Encoding.PEM, format=serialization.PublicFormat.SubjectPublicKeyInfo
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(private_path, flags, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem)
    os.chmod(private_path, 0o600)
    public_path.write_bytes(public_pem)
    log.info("wrote Ed25519 key pair %s and %s", private_path, public_path)
    return private_path, public_path

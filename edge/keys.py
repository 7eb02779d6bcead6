"""Key files of the device side: creating the shared HMAC key that signs remote commands.

The key is 32 random bytes written as 64 hexadecimal characters and a newline; the daemon and
:func:`edge.commands.sign_command` use the file's text (whitespace stripped) as the key, as it is, so any tool
that can read a text file can sign (``openssl dgst -sha256 -hmac "$(cat hmac.key)"``).  Bundle signing keys
(Ed25519) are made in the lab by ``spectro-train keygen``; the device holds only the public half.

>>> import tempfile
>>> from edge.commands import load_hmac_key
>>> with tempfile.TemporaryDirectory() as d:
...     path = write_hmac_key(Path(d) / "hmac.key")
...     (len(load_hmac_key(path)), oct(path.stat().st_mode & 0o777))
(64, '0o600')
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["HMAC_KEY_BYTES", "write_hmac_key"]

#: Random bytes in a new HMAC key (written as twice as many hexadecimal characters).
HMAC_KEY_BYTES = 32


def write_hmac_key(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` holding a new random HMAC key, readable and writable by its owner only (mode 0600).

    Parameters
    ----------
    path : path-like
        File to create; its directory must exist.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    FileExistsError
        ``path`` exists (a file, a directory or a link): a key is never overwritten, since every sender holds it.
    OSError
        The file cannot be created (no such directory, no permission).
    """
    p = Path(path)
    try:
        # O_EXCL: never overwrite, never follow a planted link; 0o600 from the start, so no moment of wider access
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise FileExistsError(f"{p} already exists; refusing to overwrite a key (every sender holds it: remove "
                              "the file first to replace it)") from None
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(secrets.token_hex(HMAC_KEY_BYTES) + "\n")
    return p

"""Consistent Overhead Byte Stuffing (COBS): the frame body without any zero byte, so ``0x00`` delimits frames.

Why COBS is written here rather than taken from the ``cobs`` package: that package ships as a source
distribution only (a C compiler is needed at install time on the device), and a pure-Python codec built on C-speed
primitives is fast enough.  :func:`cobs_encode` splits on zero bytes with :meth:`bytes.split` and emits one code
byte per run; :func:`cobs_decode` walks the chain of code bytes in a ``bytearray``, overwriting each with the zero
it stands for (one three-statement loop step per block; a block ends at each zero byte of the frame), and needs
slicing only for the rare frames with 254 non-zero bytes in a row.  A 650-pixel ``uint16`` spectrum of real counts
has a few dozen blocks and decodes several times faster than the 10 MB/s goal (``spectro-bench codec`` measures
it); the slowest input there is, an all-zero spectrum with one block per byte, comes down to about that rate.
"""

from __future__ import annotations

from firmware_bridge.codec.layouts import BytesLike
from firmware_bridge.errors import FramingError

__all__ = ["cobs_decode", "cobs_encode"]


def cobs_encode(data: BytesLike) -> bytes:
    """Byte-stuff ``data`` with COBS so that the result contains no zero byte (delimiter not appended).

    The encoding is the canonical one: a run of 254 non-zero bytes at the very end is closed by its ``0xFF``
    code alone, without an empty trailing block.

    Parameters
    ----------
    data : bytes-like
        Any bytes.

    Returns
    -------
    bytes
        ``len(data) + len(data) // 254 + 1`` bytes at most, none of them zero.

    >>> cobs_encode(b"\\x11\\x00\\x00\\x22").hex(" ")
    '02 11 01 02 22'
    """
    out = bytearray()
    parts = bytes(data).split(b"\x00")
    last = len(parts) - 1
    for k, part in enumerate(parts):
        n = len(part)
        start = 0
        while n - start >= 254:
            out.append(0xFF)
            out += part[start : start + 254]
            start += 254
        rest = n - start
        if rest or n == 0 or k != last:
            out.append(rest + 1)
            out += part[start:]
    return bytes(out)


def cobs_decode(encoded: BytesLike) -> bytes:
    """Undo :func:`cobs_encode`.

    Parameters
    ----------
    encoded : bytes-like
        One COBS-encoded frame without its delimiter.

    Returns
    -------
    bytes
        The original bytes.

    Raises
    ------
    FramingError
        When ``encoded`` is empty, contains a zero byte, has a block running past its end, or is not in the
        canonical form :func:`cobs_encode` produces (so decoding is the exact inverse of encoding).

    >>> cobs_decode(bytes.fromhex("02 11 01 02 22")).hex(" ")
    '11 00 00 22'
    """
    raw = bytes(encoded)
    if not raw:
        raise FramingError("expected a COBS-encoded frame, got 0 bytes")
    if 0 in raw:
        raise FramingError(f"expected no zero byte inside a COBS frame, got one at offset {raw.index(0)}")
    return _cobs_decode_nonzero(raw)


def _cobs_decode_nonzero(encoded: bytes | bytearray) -> bytes:
    # Fast path: walk the chain of code bytes, replacing each by the zero it stands for.  When no block is a full
    # 0xFF block, the code byte of block k+1 sits exactly where block k's implied zero belongs, so the decoded
    # frame is the buffer minus its first byte.  ``encoded`` holds no zero byte, so every step advances.
    n = len(encoded)
    buf = bytearray(encoded)
    i = 0
    full_block = False
    if 0xFF in encoded:
        while i < n:
            code = buf[i]
            if code == 0xFF:
                full_block = True
            buf[i] = 0
            i += code
    else:  # no 0xFF byte at all, so no full block: the tighter loop (zero-heavy frames have many blocks)
        while i < n:
            code = buf[i]
            buf[i] = 0
            i += code
    if i != n:
        raise FramingError(f"expected COBS blocks ending at byte {n}, got a block running to byte {i}")
    if not full_block:
        del buf[0]
        return bytes(buf)
    return _cobs_decode_blocks(encoded)


def _cobs_decode_blocks(encoded: bytes | bytearray) -> bytes:
    # General path for frames with 0xFF blocks (254 non-zero bytes in a row, e.g. long runs of large counts).
    n = len(encoded)
    out = bytearray()
    i = 0
    previous = 0
    while True:
        code = encoded[i]
        j = i + code
        out += encoded[i + 1 : j]
        if j >= n:  # last block: its implied zero is the frame's end
            if code == 1 and previous == 0xFF:
                raise FramingError("expected a canonical COBS encoding, got an empty block after a 0xFF block")
            return bytes(out)
        if code != 0xFF:
            out.append(0)
        previous = code
        i = j

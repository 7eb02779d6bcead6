"""Adapters that turn foreign spectrometer dialects into the protocol's frames (Hamamatsu C12880MA ASCII, AS7265x AT).

Each adapter is pure (bytes in, frames out, no I/O), so it runs behind any transport and is tested with recorded
byte streams; a line or reply it cannot parse raises :class:`~firmware_bridge.errors.AdapterError` (``parse_*``) or
is counted and skipped (``feed`` with ``strict=False``).
"""

from __future__ import annotations

from firmware_bridge.adapters.as7265x import AS7265X_WAVELENGTHS_NM, AS7265xAdapter, AS7265xStats
from firmware_bridge.adapters.c12880 import C12880_DEFAULT_COEFFS_NM, C12880Adapter, C12880Stats

__all__ = [
    "AS7265X_WAVELENGTHS_NM",
    "C12880_DEFAULT_COEFFS_NM",
    "AS7265xAdapter",
    "AS7265xStats",
    "C12880Adapter",
    "C12880Stats",
]

"""Write a bundle that was put in service over the configured ``bundle.path``, so that a restart serves it too.

A bundle can enter service from another file than ``bundle.path``: a deployment over MQTT, ``reload_bundle`` with a
``path``, a challenger's promotion, a probation's return.  Left there, a restart would load the file at
``bundle.path`` again, and with signed bundles the anti-rollback guard would then refuse it (an older version of a
model already served) and the daemon would not start.  :func:`install_over` copies the served file over
``bundle.path`` atomically (a temporary file, fsync, rename), keeping the file it replaces as ``<name>.previous``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["install_over"]


def install_over(source: Path, target: Path, *, keep_previous: bool = True) -> bool:
    """Copy ``source`` over ``target`` atomically; returns False (nothing to do) when they are the same file.

    Raises
    ------
    OSError
        The copy could not be written (``target`` is then unchanged, or holds the complete new file).
    """
    if target.exists() and source.resolve() == target.resolve():
        return False
    tmp = target.with_name(f".{target.name}.install-tmp")
    if keep_previous and target.is_file():
        shutil.copy2(target, target.with_name(target.name + ".previous"))
    shutil.copyfile(source, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return True

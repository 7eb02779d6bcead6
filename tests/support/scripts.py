"""Load a data directory's generator script (tests/data/*/make_*.py, samples.py) as a module by its path:
tests/data is no package, and the scripts run standalone too."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def load_script(path: Path, name: str) -> ModuleType:
    """The module executed from ``path`` under ``name`` (not entered in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, f"expected a Python file, got {path}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

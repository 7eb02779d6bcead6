"""The wheel a board installs, and the systemd unit that installs and runs it (#15, packaging for the boards).

The wheel is built from this checkout exactly as ``deploy/spectrolite-edge.service`` tells an operator to build it
(``pip wheel --no-deps``), then read as a zip: every package and its data, the console scripts, and an ``edge`` extra
that brings the device's runtime and never TensorFlow.
"""

from __future__ import annotations

import configparser
import email.parser
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
         str(repo_root)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = sorted(out.glob("spectrolite-*-py3-none-any.whl"))
    assert len(wheels) == 1, f"expected one pure-Python wheel, got {[w.name for w in out.iterdir()]}"
    return wheels[0]


def _metadata(wheel: Path) -> tuple[list[str], email.message.Message, str]:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        return names, email.parser.Parser().parsestr(z.read(info).decode()), z.read(entry).decode()


def test_the_wheel_holds_every_package_its_data_and_the_console_scripts(wheel: Path, repo_root: Path) -> None:
    names, _, entry_points = _metadata(wheel)
    tracked = subprocess.run(["git", "ls-files", "edge", "firmware_bridge", "trainer", "benchmarks"],
                             cwd=repo_root, capture_output=True, text=True, check=True).stdout.split()
    shipped = [p for p in tracked if p.endswith(".py") or p.startswith("firmware_bridge/")]
    missing = sorted(set(shipped) - set(names))
    assert not missing, f"expected the wheel to ship every module and the protocol's files, missing {missing}"
    for script in ("spectro-edge = edge.cli:main", "spectro-sim = firmware_bridge.cli:main",
                   "spectro-train = trainer.cli:main", "spectro-bench = benchmarks.cli:main"):
        assert script in entry_points


def test_the_edge_extra_brings_the_device_runtime_and_never_tensorflow(wheel: Path) -> None:
    _, meta, _ = _metadata(wheel)
    requires = meta.get_all("Requires-Dist") or []

    def extra(name: str) -> set[str]:
        marker = re.compile(rf"""extra\s*==\s*["']{name}["']""")
        return {re.split(r"[<>=!~; \[]", r, maxsplit=1)[0].lower() for r in requires if marker.search(r)}

    base = {re.split(r"[<>=!~; \[]", r, maxsplit=1)[0].lower() for r in requires if "extra ==" not in r}
    edge = extra("edge")
    assert {"ai-edge-litert", "paho-mqtt", "cryptography"} <= edge
    assert not ({"tensorflow", "keras", "scikit-learn", "scipy"} & (edge | base)), (edge, base)
    assert "tensorflow" in extra("trainer")
    assert meta["Requires-Python"].startswith(">=3.10")


def test_the_systemd_unit_installs_the_wheel_with_the_edge_extra_and_waits_for_ready(repo_root: Path) -> None:
    text = (repo_root / "deploy" / "spectrolite-edge.service").read_text()
    install = [line for line in text.splitlines() if "/venv/bin/pip install" in line]
    assert len(install) == 1 and "[edge]" in install[0] and ".whl" in install[0], install
    assert "pip wheel --no-deps" in text and "64-bit" in text

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keep systemd's case-sensitive keys
    unit.read_string(text)
    service = unit["Service"]
    # The daemon sends READY=1 once its threads run and WATCHDOG=1 while they are healthy (edge/sdnotify.py).
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert float(service["WatchdogSec"]) > 0

"""The device never pays for the trainer: importing ``edge`` and ``firmware_bridge`` (every module) and running the
daemon's inference path load no TensorFlow, Keras, scikit-learn or SciPy, checked in fresh interpreters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

#: Top-level packages that must never be imported on the device.
HEAVY = ("tensorflow", "keras", "tf_keras", "sklearn", "scipy")

#: Optional packages loaded only when their feature is switched on (the opcua extra's server): importing every edge
#: module must not load them.
OPTIONAL = ("asyncua",)

#: Modules that exist only for the trainer-facing side or a CLI and may be skipped by the walk (none today).
SKIP_MODULES: tuple[str, ...] = ()

_WALK = r"""
import importlib, json, pkgutil, sys
failed = {}
for pkg_name in ("firmware_bridge", "edge"):
    pkg = importlib.import_module(pkg_name)
    for info in pkgutil.walk_packages(pkg.__path__, pkg_name + "."):
        if info.name in SKIP:
            continue
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # a module that fails to import is reported, not hidden
            failed[info.name] = repr(exc)
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
optional = sorted({m.split(".")[0] for m in sys.modules} & set(OPTIONAL))
print(json.dumps({"heavy": heavy, "optional": optional, "failed": failed, "n": len(sys.modules)}))
"""


def _run(code: str, repo_root: Path, *extra: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(repo_root), OMP_NUM_THREADS="1")
    prog = f"HEAVY = {HEAVY!r}\nOPTIONAL = {OPTIONAL!r}\nSKIP = {SKIP_MODULES!r}\n" + code
    proc = subprocess.run(
        [sys.executable, "-c", prog, *extra], cwd=repo_root, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_edge_package_is_light(repo_root: Path) -> None:
    out = _run(
        "import json, sys\nimport edge, firmware_bridge\n"
        "print(json.dumps({'heavy': sorted({m.split('.')[0] for m in sys.modules} & set(HEAVY))}))",
        repo_root,
    )
    assert out["heavy"] == []


def test_every_edge_and_bridge_module_imports_light(repo_root: Path) -> None:
    out = _run(_WALK, repo_root)
    assert out["failed"] == {}
    assert out["heavy"] == []
    assert out["optional"] == []  # edge.opcua imports asyncua only when the server starts


_DAEMON_PATH = r"""
import json, sys, time
from edge.bundle import load_bundle
from edge.inference import InferenceEngine, Prediction
from edge.references import ReferenceSet, ReferenceSpectrum
from firmware_bridge.frames import Dark, Reference, Status
from firmware_bridge.simulator import SimulatorConfig, VirtualSpectrometer
bundle = load_bundle(sys.argv[1])
engine = InferenceEngine(bundle)
dev = VirtualSpectrometer.from_config(SimulatorConfig(seed=0, synthetic_samples=500, synthetic_channels=256))
refs, wl = ReferenceSet(), None
for f in dev.session_start():
    if isinstance(f, Status):
        wl = f.wavelengths_nm()
    else:
        refs = refs.with_spectrum(ReferenceSpectrum.from_frame(f, captured_at_s=time.time()))
outcomes = [engine.process(dev.stream_next()[0], refs, wavelengths_nm=wl) for _ in range(4)]
n = sum(isinstance(o, Prediction) for o in outcomes)
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
print(json.dumps({"heavy": heavy, "n": n, "runtime": bundle.runtime.runtime_name}))
"""


def test_daemon_inference_path_is_light(repo_root: Path, example_bundle: Path) -> None:
    """Load a real bundle (real .tflite by the real runtime) and run the daemon's inference stage on simulator
    frames.  (The running daemon process is checked too, through /proc/<pid>/maps, in test_daemon_e2e.py.)"""
    out = _run(_DAEMON_PATH, repo_root, str(example_bundle))
    assert out["n"] == 4
    assert out["runtime"] != "tensorflow"
    assert out["heavy"] == []

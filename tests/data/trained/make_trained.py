"""Regenerate the trainer-built artefacts of this folder (run by hand, never by the tests; needs the trainer, i.e.
TensorFlow, and the shared datasets; a few minutes on two cores):

    python tests/data/trained/make_trained.py

The edge and firmware_bridge tests run in an environment without TensorFlow (``make test-edge``), so they serve
these committed files instead of training their own. What each file is, and the settings that made it, are in
tests/support/trained.py:

- seven bundles written by ``spectro-train fit`` (a child process): examples/demo.toml as it is (1.0.0), with
  model_version 1.1.0, with ``signal = "absorbance"``, with ``--model cnn`` and model_version 1.2.0 (a challenger
  whose predictions differ from 1.0.0's, a PLS), with ``[ood] autoencoder = true``, ``--model pls`` and
  model_version 1.3.0-ae (the autoencoder OOD statistic), and on a synthetic FTIR dataset in cm-1
  (``--model pls``); and a per-target bundle (format 4) on the two-target mixtures of tests/support/per_target.py;
- the tiny Keras models of tests/support/bundles.py on real tablets spectra, converted by trainer.quantize (int8,
  float, an int8 classifier), and the signed regression bundle ``write_regression_bundle`` makes of them, with the
  public half of a key pair made for the occasion (the private half is thrown away).

tests/integration/test_committed_artefacts.py rebuilds them (with :func:`build`) and fails when the committed
files no longer match what the trainer writes: regenerate then, and say why in the commit message.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support import trained  # noqa: E402  (the repo root goes on sys.path first, for `python <this file>`)

DEMO_CONFIG = REPO / "examples" / "demo.toml"


def _sub(text: str, pattern: str, replacement: str) -> str:
    """``text`` with the one line matching ``pattern`` replaced (a clear error when the config changed shape)."""
    new, n = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    if n != 1:
        raise SystemExit(f"expected one line matching {pattern!r} in {DEMO_CONFIG}, found {n}: update {__file__}")
    return new


def _fit(config_text: str, work: Path, name: str, *extra: str) -> Path:
    """``spectro-train fit`` of ``config_text`` (written to ``work/<name>.toml``) in a child process: its bundle."""
    import os
    import subprocess

    work.mkdir(parents=True, exist_ok=True)
    config = work / f"{name}.toml"
    config.write_text(config_text, encoding="utf-8")
    out = work / name
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-m", "trainer.cli", "fit", config.name, "--out", name, *extra],
                          cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    bundles = sorted(out.glob("*.spectrolite"))
    if proc.returncode != 0 or len(bundles) != 1:
        raise SystemExit(f"spectro-train fit {name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return bundles[0]


def build_demo(out: Path, work: Path) -> None:
    """The three bundles of the demo config (1.0.0, 1.1.0, absorbance) into ``out``."""
    text = DEMO_CONFIG.read_text(encoding="utf-8")
    shutil.copyfile(_fit(text, work, "demo-1.0.0"), out / trained.DEMO_V1.name)
    v2 = _sub(text, r'^model_version = "1\.0\.0"$', 'model_version = "1.1.0"')
    shutil.copyfile(_fit(v2, work, "demo-1.1.0"), out / trained.DEMO_V2.name)
    build_absorbance(out, work)


def build_absorbance(out: Path, work: Path) -> None:
    text = DEMO_CONFIG.read_text(encoding="utf-8")
    text = _sub(text, r'^signal = "counts".*$', 'signal = "absorbance"')
    text = _sub(text, r'^model_version = ".*"$', 'model_version = "2.0.0-absorbance"')
    text = _sub(text, r"^epochs = \d+$", "epochs = 5")
    shutil.copyfile(_fit(text, work, "demo-absorbance"), out / trained.DEMO_ABSORBANCE.name)


def build_cnn(out: Path, work: Path) -> None:
    """The demo config fitted as a CNN (``auto`` picks PLS for 1.0.0), model_version 1.2.0: the same device
    contract as 1.0.0, other predictions (a shadow-mode challenger)."""
    text = DEMO_CONFIG.read_text(encoding="utf-8")
    text = _sub(text, r'^model_version = ".*"$', 'model_version = "1.2.0"')
    shutil.copyfile(_fit(text, work, "demo-cnn", "--model", "cnn"), out / trained.DEMO_CNN.name)


def build_autoencoder(out: Path, work: Path) -> None:
    """The demo config with the autoencoder OOD statistic (``--model pls``, model_version 1.3.0-ae)."""
    text = DEMO_CONFIG.read_text(encoding="utf-8")
    text = _sub(text, r'^model_version = ".*"$', 'model_version = "1.3.0-ae"')
    text = _sub(text, r"^alpha = 0\.01$", "alpha = 0.01\nautoencoder = true\nautoencoder_epochs = 150")
    shutil.copyfile(_fit(text, work, "demo-ae", "--model", "pls"), out / trained.DEMO_AE.name)


def build_ftir(out: Path, work: Path) -> None:
    """The cm-1 bundle: the demo config on the synthetic FTIR dataset (written beside the config, named by a
    relative path so that no machine path reaches the bundle)."""
    from firmware_bridge.synthetic import make_synthetic_dataset, save_npz

    work.mkdir(parents=True, exist_ok=True)
    data = make_synthetic_dataset(trained.FTIR_ROWS, seed=trained.FTIR_SEED, n_channels=trained.FTIR_PIXELS,
                                  wavelength_range_nm=trained.FTIR_RANGE_CM1, axis_unit="cm-1")
    save_npz(data, work / "ftir.npz")
    text = DEMO_CONFIG.read_text(encoding="utf-8")
    text = _sub(text, r"^synthetic = .*$", 'path = "ftir.npz"\naxis_unit = "cm-1"')
    text = _sub(text, r'^model_id = ".*"$', 'model_id = "synthetic-ftir"')
    text = _sub(text, r"^epochs = \d+$", "epochs = 3")
    shutil.copyfile(_fit(text, work, "ftir", "--model", "pls", "--threads", "1"), out / trained.FTIR_BUNDLE.name)


def build_per_target(out: Path, work: Path) -> None:
    """The per-target bundle: the two-target mixtures of tests/support/per_target.py, PLS serving one target and
    the CNN the other (the fit must split, else this fails)."""
    import json
    import zipfile

    from tests.support.per_target import CONFIG, write_mixtures

    work.mkdir(parents=True, exist_ok=True)
    write_mixtures(work / "mix.npz")
    bundle = _fit(CONFIG.format(data="mix.npz", model_version="1.0.0"), work, "per-target", "--threads", "1")
    with zipfile.ZipFile(bundle) as zf:
        serving = json.loads(zf.read("manifest.json")).get("serving")
    if serving is None:
        raise SystemExit("the per-target fit deployed one model for both targets: update tests/support/per_target.py")
    shutil.copyfile(bundle, out / trained.PER_TARGET_BUNDLE.name)


def build_tablets(out: Path, work: Path) -> None:
    """The tiny tablets models' conversions and their signed bundle."""
    from tests.conftest import datasets_path
    from tests.support.bundles import tiny_models, write_regression_bundle
    from trainer.bundle import generate_keypair

    models = tiny_models(datasets_path())
    (out / trained.TABLETS_INT8.name).write_bytes(models.int8_bytes)
    (out / trained.TABLETS_FLOAT.name).write_bytes(models.float_bytes)
    (out / trained.TABLETS_CLASS_INT8.name).write_bytes(models.class_int8_bytes)
    private, public = generate_keypair(work / "keys", name="tablets-assay")
    write_regression_bundle(models, out / trained.TABLETS_BUNDLE.name, private_key_path=private)
    shutil.copyfile(public, out / trained.TABLETS_PUBLIC_KEY.name)


#: Each group of artefacts and its builder (the staleness test rebuilds one group at a time).
BUILDERS = {"demo": build_demo, "absorbance": build_absorbance, "cnn": build_cnn, "autoencoder": build_autoencoder,
            "ftir": build_ftir, "per_target": build_per_target, "tablets": build_tablets}


def build(out: Path, groups: tuple[str, ...] = ("demo", "cnn", "autoencoder", "ftir", "per_target", "tablets")) -> None:
    """Write the artefacts of ``groups`` into ``out`` (file names as in tests/support/trained.py)."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for group in groups:
            BUILDERS[group](out, Path(tmp) / group)


def main() -> int:
    build(HERE)
    for path in trained.ALL:
        print(f"{path.relative_to(REPO)}: {path.stat().st_size} bytes")
    print(f"total: {sum(p.stat().st_size for p in trained.ALL)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

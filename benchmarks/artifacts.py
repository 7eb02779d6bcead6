"""The models the benchmarks compare: build them once with the trainer's own code, cache them, and find them again.

``python -m benchmarks.artifacts --out DIR [--epochs E]`` trains the tablets protocol (``examples/tablets_assay.toml``
through :func:`trainer.pipeline.fit_full`, with fewer epochs by default so a benchmark starts in minutes) and writes
next to the trainer's own outputs (the absorbance bundle and ``metrics.json``):

- the trainer's bundle itself (``artifacts.json`` names it under ``bundle``): its pipeline starts with the
  counts -> absorbance conversion (``[instrument] signal = "counts"``), i.e. what a device sending raw counts runs;
- ``model.keras`` (the float Keras model), ``model_float.tflite`` (:func:`trainer.quantize.convert_float`),
  ``model_int8.tflite`` (the bundle's model), ``model_pruned_int8.tflite`` (magnitude pruning with
  :mod:`trainer.pruning` at 50 % sparsity, then int8; only when that module is installed);
- ``pls.npz``: the PLS baseline as one affine map ``y = x_pre @ coef + intercept`` (read off the fitted
  scikit-learn model by probing it, so it is exact for any scikit-learn version) with ``pls_preprocessing.json``,
  the edge spec of the PLS model's own preprocessing;
- ``artifacts.json``: what was built, and why something was not; for the pruned model also its measured sparsity
  and the test-split RMSEP of the int8 and pruned int8 models (edge runtime, same preprocessing).

The build runs in a child process (:func:`ensure_tablets`), so TensorFlow's memory and threads never land in the
process that times the edge stages; the cache is reused while ``artifacts.json`` says it is complete.

:func:`find_references` looks for the same file names next to any bundle given with ``--bundle``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "References",
    "build_tablets",
    "datasets_dir",
    "default_cache_dir",
    "deployed_bundle",
    "ensure_demo",
    "ensure_tablets",
    "find_references",
    "main",
    "repo_root",
]

#: File names written by :func:`build_tablets` and looked for by :func:`find_references`.
KERAS_NAME = "model.keras"
FLOAT_NAME = "model_float.tflite"
INT8_NAME = "model_int8.tflite"
PRUNED_NAME = "model_pruned_int8.tflite"
PLS_NAME = "pls.npz"
PLS_PRE_NAME = "pls_preprocessing.json"
MANIFEST_NAME = "artifacts.json"
#: Format of ``artifacts.json``; a cache with another version is rebuilt.
ARTIFACTS_VERSION = 3
#: Default training epochs of the benchmark's tablets model (the shipped protocol uses 200).
DEFAULT_EPOCHS = 60
#: Kernel sparsity of the pruned reference model.
PRUNED_SPARSITY = 0.5
#: Dark and white levels (counts) of the synthetic raw frames made from absorbance spectra (a 16-bit detector).
DARK_COUNTS = 1000.0
WHITE_COUNTS = 60000.0


def repo_root() -> Path:
    """Folder holding ``benchmarks/`` (the checkout, or site-packages when installed)."""
    return Path(__file__).resolve().parents[1]


def datasets_dir() -> Path:
    """``$SPECTROLITE_DATASETS``, else ``<checkout>/../shared/datasets``."""
    env = os.environ.get("SPECTROLITE_DATASETS")
    return Path(env) if env else repo_root().parent / "shared" / "datasets"


def default_cache_dir() -> Path:
    """``$SPECTROLITE_BENCH_CACHE``, else ``$XDG_CACHE_HOME/spectrolite/bench`` (``~/.cache`` by default)."""
    env = os.environ.get("SPECTROLITE_BENCH_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "spectrolite" / "bench"


def absorbance_to_counts(A: Any) -> Any:
    """Raw counts whose counts -> absorbance conversion with :data:`DARK_COUNTS`/:data:`WHITE_COUNTS` gives ``A``."""
    import numpy as np

    return DARK_COUNTS + (WHITE_COUNTS - DARK_COUNTS) * np.power(10.0, -np.asarray(A, dtype=np.float64))


@dataclass
class References:
    """Reference models found for a bundle (any of them may be missing; ``missing`` says why)."""

    keras_path: Path | None = None
    float_tflite: Path | None = None
    int8_tflite: Path | None = None
    pruned_int8_tflite: Path | None = None
    pls_npz: Path | None = None
    pls_preprocessing: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


def find_references(directory: Path) -> References:
    """Reference files by their standard names in ``directory`` (see the module docstring)."""
    refs = References()
    manifest = directory / MANIFEST_NAME
    if manifest.is_file():
        try:
            refs.info = json.loads(manifest.read_text(encoding="utf-8"))
        except ValueError:
            refs.info = {}
    for attr, name in (("keras_path", KERAS_NAME), ("float_tflite", FLOAT_NAME), ("int8_tflite", INT8_NAME),
                       ("pruned_int8_tflite", PRUNED_NAME), ("pls_npz", PLS_NAME),
                       ("pls_preprocessing", PLS_PRE_NAME)):
        p = directory / name
        if p.is_file():
            setattr(refs, attr, p)
        else:
            refs.missing[attr] = str(refs.info.get("missing", {}).get(attr, f"no {name} next to the bundle"))
    return refs


# ------------------------------------------------------------------------------------------------------ build
def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _affine_map(predict: Any, n_features: int) -> tuple[Any, Any]:
    """(coef (n_features, n_targets), intercept (n_targets,)) of an affine ``predict`` read off by probing it."""
    import numpy as np

    b = np.asarray(predict(np.zeros((1, n_features))), dtype=np.float64).reshape(-1)
    W = np.asarray(predict(np.eye(n_features)), dtype=np.float64).reshape(n_features, -1) - b[None, :]
    return W, b


def _features(bundle: Any, absorbance: Any) -> Any:
    """The model's input features for absorbance rows (made into noise-free counts for a counts bundle)."""
    import numpy as np

    if bundle.input_contract.frame_signal != "counts":
        return bundle.preprocess(absorbance)
    n = np.asarray(absorbance).shape[1]
    return bundle.preprocess(absorbance_to_counts(absorbance), dark=np.full(n, DARK_COUNTS),
                             reference=np.full(n, WHITE_COUNTS), wavelengths=bundle.wavelengths)


def build_tablets(out_dir: Path, *, epochs: int = DEFAULT_EPOCHS, seed: int = 0) -> dict[str, Any]:
    """Train the tablets protocol and write every artifact of the module docstring into ``out_dir``.

    Returns the content written to ``artifacts.json``.
    """
    import numpy as np

    from edge.bundle import load_bundle
    from trainer.config import config_from_dict
    from trainer.data import load_configured
    from trainer.pipeline import fit_full
    from trainer.quantize import convert_float, convert_int8

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    toml_path = repo_root() / "examples" / "tablets_assay.toml"
    if not toml_path.is_file():
        raise FileNotFoundError(f"expected the tablets protocol at {toml_path}; pass --bundle instead")
    d = _load_toml(toml_path)
    d["report"] = False
    d["seed"] = seed
    d.setdefault("model", {})["epochs"] = int(epochs)
    data_file = datasets_dir() / "idrc2002_tablets.npz"
    if os.environ.get("SPECTROLITE_DATASETS") or not (toml_path.parent / d["data"]["path"]).is_file():
        d["data"]["path"] = str(data_file)
    cfg = config_from_dict(d, base_dir=toml_path.parent, source=f"{toml_path} (epochs={epochs})")
    result = fit_full(cfg, out)
    missing: dict[str, str] = {}
    info: dict[str, Any] = {
        "version": ARTIFACTS_VERSION,
        "protocol": "examples/tablets_assay.toml",
        "epochs": int(epochs),
        "seed": seed,
        "bundle": result.bundle_path.name,
        "metrics": result.metrics_path.name,
        "comparison": result.metrics.get("comparison"),
    }

    bundle = load_bundle(result.bundle_path)
    trained = result.extras["trained"]
    plan = result.extras["plan"]
    pls = result.extras["pls"]
    model = trained.model
    model.save(out / KERAS_NAME)
    (out / FLOAT_NAME).write_bytes(convert_float(model))
    (out / INT8_NAME).write_bytes(bundle.runtime.model_content)

    # The PLS baseline as an affine map on its own preprocessed features.
    m0 = pls.models[0]
    edge_pls_pre = m0.preprocess.to_edge()
    n_feat = int(np.prod(edge_pls_pre.output_shape)) if edge_pls_pre.output_shape else bundle.wavelengths.size
    coef, intercept = _affine_map(m0.pls.predict, n_feat)
    np.savez(out / PLS_NAME, coef=coef, intercept=intercept, n_components=np.int64(m0.n_components))
    (out / PLS_PRE_NAME).write_text(edge_pls_pre.to_json(), encoding="utf-8")
    info["pls"] = {"candidate": m0.candidate, "n_components": int(m0.n_components)}

    # The trainer's bundle is what a device sending raw counts runs ([instrument] signal = "counts" by default:
    # its spec starts with the counts -> absorbance step); no second, hand-made bundle.
    if bundle.input_contract.frame_signal != "counts":
        missing["counts_bundle"] = (f"the trained bundle expects {bundle.input_contract.frame_signal} frames, "
                                    "not raw counts")
    info["counts_bundle"] = result.bundle_path.name

    # Pruned reference (trainer.pruning is optional: it may not be installed or finished).
    try:
        from trainer import pruning  # type: ignore[import-not-found,unused-ignore]  # trainer.pruning is optional

        ds = load_configured(cfg.data)
        tr, sel = plan.train_rows, plan.select_rows
        X_tr = _features(bundle, ds.X[tr])
        X_sel = _features(bundle, ds.X[sel]) if sel.size else None  # no selection rows: [split] names none
        y_tr = ds.y[tr]
        pcfg = pruning.PruneConfig.from_dict({"target_sparsity": PRUNED_SPARSITY})
        pr = pruning.prune_model(model, X_tr, y_tr, config=pcfg, seed=seed, X_sel=X_sel,
                                 y_sel=ds.y[sel] if sel.size else None)
        rng = np.random.default_rng(seed)
        rep = X_tr[np.sort(rng.choice(X_tr.shape[0], min(200, X_tr.shape[0]), replace=False))]
        pruned_bytes = convert_int8(pr.model, rep, subprocess=False, seed=seed)
        (out / PRUNED_NAME).write_bytes(pruned_bytes)
        from edge.runtime import ModelRuntime

        pruned_rt = ModelRuntime(pruned_bytes)
        rmsep: dict[str, dict[str, float]] = {}
        for name, rows in plan.tests.items():
            X_te = _features(bundle, ds.X[rows])
            y_te = np.asarray(ds.y[rows], dtype=np.float64).reshape(rows.size, -1)
            for label, rt in (("int8", bundle.runtime), ("pruned_int8", pruned_rt)):
                pred = np.asarray(rt.predict(X_te), dtype=np.float64).reshape(rows.size, -1)
                rmsep.setdefault(name, {})[label] = float(np.sqrt(np.mean((pred - y_te) ** 2)))
        info["pruned"] = {"target_sparsity": PRUNED_SPARSITY, "sparsity": float(pr.sparsity),
                          "fine_tune_epochs": pcfg.epochs, "test_rmsep": rmsep}
    except Exception as exc:  # optional reference: any failure is recorded, not fatal
        missing["pruned_int8_tflite"] = f"pruned model not built: {type(exc).__name__}: {exc}"
        log.warning("%s", missing["pruned_int8_tflite"])
    info["missing"] = missing
    info["build_seconds"] = round(time.perf_counter() - t0, 1)
    (out / MANIFEST_NAME).write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    return info


def deployed_bundle(root: Path) -> Path:
    """The bundle of a folder written by :func:`build_tablets` (named in its ``artifacts.json``)."""
    info = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    return root / str(info["bundle"])


def ensure_demo(cache_dir: Path | None = None, *, rebuild: bool = False) -> Any:
    """The demo model: ``spectro-train fit examples/demo.toml`` in a child process, cached by the config's hash.

    Returns a :class:`benchmarks.harness.TrainedModel` (``.bundle``, ``.metrics``, ``.directory``).
    """
    from benchmarks.harness import ensure_trained

    config = repo_root() / "examples" / "demo.toml"
    if not config.is_file():
        raise FileNotFoundError(f"expected the demo config at {config}; pass --bundle")
    return ensure_trained(config, cache_dir, rebuild=rebuild)


def ensure_tablets(cache_dir: Path | None = None, *, epochs: int = DEFAULT_EPOCHS, rebuild: bool = False) -> Path:
    """The folder with the tablets artifacts, built in a child process when the cache lacks them."""
    root = (cache_dir or default_cache_dir()) / f"tablets-e{epochs}"
    manifest = root / MANIFEST_NAME
    if not rebuild and manifest.is_file():
        try:
            if json.loads(manifest.read_text(encoding="utf-8")).get("version") == ARTIFACTS_VERSION:
                return root
        except ValueError:
            pass
    log.info("building the tablets benchmark models in %s (trainer, %d epochs; minutes, once)", root, epochs)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo_root()), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.artifacts", "--out", str(root), "--epochs", str(epochs)],
                          env=env, check=False)
    if proc.returncode != 0 or not manifest.is_file():
        raise RuntimeError(f"building the tablets benchmark models failed (exit code {proc.returncode})")
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.artifacts --out DIR [--epochs E] [--seed S]``."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.artifacts", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder to write the artifacts into")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="CNN training epochs (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    info = build_tablets(args.out, epochs=args.epochs, seed=args.seed)
    print(json.dumps({k: info[k] for k in ("bundle", "counts_bundle", "missing", "build_seconds")}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The rows a loop streams: picked from a training config's test split or by column selectors, written as ``.npz``.
A config whose ``[data]`` is a CSV or JCAMP-DX file, and any classification data set, is read with the trainer's
loader."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness.errors import HarnessError
from benchmarks.harness.settings import DARK_COUNTS, WHITE_COUNTS

__all__ = ["Stream", "check_contract", "classes_in_bundle_order", "dataset_arrays", "dataset_file",
           "dataset_of_config", "offline_inputs", "parse_selectors", "select_rows",
           "selectors_of_test_set", "stream_rows", "test_rows_of_config"]


@dataclass(frozen=True)
class Stream:
    """Rows a loop streams, as written for ``spectro-sim --dataset``."""

    path: Path  #: the ``.npz`` the simulator reads
    absorbance: np.ndarray  #: (n, p) the rows' spectra, decadic absorbance
    wavelengths: np.ndarray  #: (p,)
    y: np.ndarray  #: (n, k) reference values, the bundle's targets in its order
    target_names: tuple[str, ...]
    description: str  #: where the rows come from and how they were selected


def dataset_of_config(cfg: Mapping[str, Any], base_dir: Path) -> tuple[dict[str, np.ndarray], str]:
    from firmware_bridge.synthetic import load_npz, make_synthetic_dataset

    data = cfg.get("data", {})
    synthetic = data.get("synthetic")
    if synthetic is not None:
        samples = int(synthetic.get("samples", 500))
        seed = int(synthetic.get("seed", 0))
        channels = int(synthetic.get("channels", 256))
        return (make_synthetic_dataset(samples, seed=seed, n_channels=channels),
                f"synthetic spectra (seed {seed}, {samples} samples, {channels} channels)")
    if "path" not in data:
        raise HarnessError("expected [data] path or [data] synthetic in the training config, found neither")
    path = Path(data["path"])
    path = path if path.is_absolute() else (base_dir / path).resolve()
    if not path.is_file() and os.environ.get("SPECTROLITE_DATASETS"):
        path = Path(os.environ["SPECTROLITE_DATASETS"]) / path.name
    if path.suffix != ".npz" or data.get("task") == "classification":
        return _dataset_through_trainer(cfg, base_dir)[0], str(path)
    return load_npz(path), str(path)


def _dataset_through_trainer(cfg: Mapping[str, Any], base_dir: Path, *,
                             test_set: str | None = None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """A ``[data]`` read by the trainer's own loader (its delimiters, units, reference file and ``exclude``), as the
    arrays of a dataset ``.npz``: the rows a loop streams are the rows the fit saw. With ``test_set``, also the rows
    of that test set as the trainer's split plan draws them (``[split] method = "grouped_kfold"``)."""
    from trainer.config import config_from_dict
    from trainer.data import load_configured
    from trainer.errors import TrainerError
    from trainer.splits import make_split_plan

    try:
        tc = config_from_dict(cfg, base_dir=base_dir)
        ds = load_configured(tc.data)
        tests = make_split_plan(ds, tc.split, seed=tc.seed).tests if test_set is not None else {}
    except TrainerError as exc:
        raise HarnessError(f"cannot read the training config's data: {exc}") from exc
    if test_set is not None and test_set not in tests:
        raise HarnessError(f"expected a test set in {sorted(tests)}, got {test_set!r}")
    return dataset_arrays(ds), None if test_set is None else np.asarray(tests[test_set])


def dataset_arrays(ds: Any) -> dict[str, np.ndarray]:
    """A trainer's ``SpectralDataset`` as the arrays of a dataset ``.npz`` (its per-row columns too); a
    classification's ``y`` holds class indices into ``class_names``."""
    out = {str(k): np.asarray(v) for k, v in ds.columns.items()}
    out.update(X=ds.X, y=ds.y, wavelengths=ds.wavelengths, target_names=np.array(list(ds.target_names)))
    if ds.class_names is not None:
        out["class_names"] = np.array(list(ds.class_names))
    return out


def dataset_file(path: Path, task: str = "regression", targets: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The arrays of a dataset: an ``.npz`` as stored; a classification's, and a CSV or JCAMP-DX file's
    (``targets``: the bundle's, the columns that hold its references), read by the trainer's loader, so ``y``
    holds class indices into ``class_names`` as the fit saw them (:func:`classes_in_bundle_order`)."""
    from firmware_bridge.synthetic import SyntheticDataError, load_npz

    if task != "classification" and path.suffix.lower() == ".npz":
        try:
            return load_npz(path)
        except SyntheticDataError as exc:
            raise HarnessError(str(exc)) from exc
    from trainer.data import load_dataset
    from trainer.errors import TrainerError

    # an .npz classification names its target itself; a CSV or JCAMP-DX file has the bundle's target column
    names = None if task == "classification" and path.suffix.lower() == ".npz" else list(targets)
    try:
        return dataset_arrays(load_dataset(path, task=task, targets=names))
    except TrainerError as exc:
        what = ("other [data] settings" if path.suffix.lower() == ".npz"
                else "references in a separate file, or other [data] settings")
        raise HarnessError(f"cannot read {path} as a {task} data set: {exc}; {what} need the config that reads them: "
                           "--config CONFIG") from exc


def classes_in_bundle_order(data: Mapping[str, np.ndarray], labels: Sequence[str]) -> dict[str, np.ndarray]:
    """``data`` with its class indices (into its ``class_names``) turned into indices into a bundle's class
    ``labels``, the order of the bundle's outputs; a class the bundle does not know is refused."""
    if "class_names" not in data:
        raise HarnessError("expected a classification data set (class indices with class_names), got none")
    names = [str(n) for n in np.asarray(data["class_names"]).reshape(-1)]
    y = np.asarray(data["y"]).reshape(len(data["X"]), -1)
    unknown = sorted({names[int(i)] for i in y[:, 0]} - set(labels))
    if unknown:
        raise HarnessError(f"expected the data set's classes among the bundle's {list(labels)}, got {unknown} "
                           "too")
    order = np.array([list(labels).index(n) for n in names])
    return {**data, "y": order[y[:, :1].astype(np.int64)].astype(np.float64),
            "class_names": np.array(list(labels))}


def test_rows_of_config(
    cfg: Mapping[str, Any], base_dir: Path, name: str | None = None
) -> tuple[str, dict[str, np.ndarray], np.ndarray, str, dict[str, Any]]:
    """(test set name, dataset arrays, its rows, where they come from, its selectors) of a test set of a training
    config: the rows its ``[split.test]`` selectors match, or the test fold of ``[split] method = "grouped_kfold"``
    as the trainer draws it (always named ``test``; no selectors)."""
    split = cfg.get("split", {})
    if isinstance(split, Mapping) and split.get("method") == "grouped_kfold":
        name = "test" if name is None else name
        data, rows = _dataset_through_trainer(cfg, base_dir, test_set=name)
        assert rows is not None
        source = cfg.get("data", {}).get("path", "synthetic spectra")
        return name, data, rows, f"{source}, test fold {split.get('test_fold', 0)} of the config's grouped folds", {}
    data, source = dataset_of_config(cfg, base_dir)
    name, selectors = selectors_of_test_set(cfg, name)
    sel = ", ".join(f"{k} == {v!r}" for k, v in selectors.items())
    return name, data, select_rows(data, selectors), f"{source}, {sel}", selectors


def selectors_of_test_set(cfg: Mapping[str, Any], name: str | None = None) -> tuple[str, dict[str, Any]]:
    """(name, column -> value) of a test set of ``[split.test]`` (the first one unless ``name`` is given)."""
    tests = cfg.get("split", {}).get("test", {})
    if not isinstance(tests, Mapping) or not tests:
        raise HarnessError("expected [split.test] in the training config to name the rows to stream, found none")
    if name is None:
        name = next(iter(tests))
    if name not in tests:
        raise HarnessError(f"expected a test set in {sorted(tests)}, got {name!r}")
    sel = tests[name]
    if not isinstance(sel, Mapping):
        raise HarnessError(f"expected [split.test] {name} to be column = value selectors, got {sel!r}")
    return str(name), dict(sel)


def select_rows(data: Mapping[str, np.ndarray], selectors: Mapping[str, Any]) -> np.ndarray:
    """Indices of the rows where every column equals its selector's value (a list of values: any of them)."""
    n = len(data["X"])
    keep = np.ones(n, dtype=bool)
    for col, value in selectors.items():
        if col not in data:
            raise HarnessError(f"expected a column {col!r} in the dataset to select rows, found {sorted(data)}")
        column = np.asarray(data[col])
        values = value if isinstance(value, (list, tuple)) else [value]
        hit = np.zeros(n, dtype=bool)
        for v in values:
            hit |= column.astype(str) == str(v) if column.dtype.kind in "USO" else column == v
        keep &= hit
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        raise HarnessError(f"expected rows matching {dict(selectors)}, found none")
    return rows


def parse_selectors(items: Sequence[str]) -> dict[str, Any]:
    """``["split=calibrate", "instrument=1"]`` -> ``{"split": "calibrate", "instrument": 1}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HarnessError(f"expected a selector COLUMN=VALUE, got {item!r}")
        try:
            out[key] = int(value)
        except ValueError:
            out[key] = value
    return out


def stream_rows(out: Path, data: Mapping[str, np.ndarray], rows: np.ndarray, target_names: Sequence[str],
                description: str, *, axis_unit: str = "nm") -> Stream:
    """Write ``rows`` of ``data`` as a dataset ``.npz`` whose ``y`` holds ``target_names`` in that order.

    ``axis_unit`` (``"nm"`` or ``"cm-1"``, the unit of ``data["wavelengths"]``; pass the bundle's
    ``input_contract.wavelength_unit``) is written into the file, so ``spectro-sim`` announces the axis in it."""
    names = [str(n) for n in np.asarray(data.get("target_names", [])).reshape(-1)]
    y_all = np.asarray(data["y"], dtype=np.float64).reshape(len(data["X"]), -1)
    cols = []
    for t in target_names:
        if t not in names:
            raise HarnessError(f"expected the bundle's target {t!r} among the dataset's targets {names}")
        cols.append(names.index(t))
    X = np.asarray(data["X"], dtype=np.float64)[rows]
    y = y_all[rows][:, cols]
    wl = np.asarray(data["wavelengths"], dtype=np.float64)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, X=X, y=y, wavelengths=wl, target_names=np.array(list(target_names)), axis_unit=np.array(axis_unit))
    return Stream(out, X, wl, y, tuple(target_names), description)


def check_contract(bundle: Any, stream: Stream, *, sends: str = "counts") -> None:
    """Raise :class:`HarnessError` unless the bundle accepts what the simulator will send for ``stream``.

    Pixel count and wavelength range against the bundle's input contract, and the signal the simulator sends
    (``counts`` unless told otherwise) against the contract's ``frame_signal``.
    """
    from edge.errors import InputContractError
    from firmware_bridge.codec import max_spectrum_pixels

    contract = bundle.input_contract
    most = max_spectrum_pixels(sends)
    if stream.wavelengths.size > most:
        raise HarnessError(f"the simulator cannot send these spectra: expected at most {most} pixels (one SPECTRUM "
                           f"frame of {sends} in {'uint16' if sends == 'counts' else 'float32'}), got "
                           f"{stream.wavelengths.size} (the simulator streams {stream.description})")
    try:
        contract.check(int(stream.wavelengths.size), wavelengths=stream.wavelengths)
    except InputContractError as exc:
        raise HarnessError(f"the bundle {bundle.model_id} cannot serve these spectra: {exc} "
                           f"(the simulator streams {stream.description})") from exc
    if contract.frame_signal != sends:
        raise HarnessError(f"the bundle {bundle.model_id} expects {contract.frame_signal} frames, "
                           f"got a simulator sending {sends}")


def offline_inputs(bundle: Any, absorbance: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``absorbance`` rows as the bundle's raw input (noise-free counts with flat dark/white, or the signal itself)."""
    A = np.asarray(absorbance, dtype=np.float64)
    signal_kind = bundle.input_contract.frame_signal
    if signal_kind == "counts":
        dark = np.full(A.shape[1], DARK_COUNTS)
        white = np.full(A.shape[1], WHITE_COUNTS)
        return dark + (white - dark) * np.power(10.0, -A), {"dark": dark, "reference": white}
    if signal_kind == "reflectance":
        return np.power(10.0, -A), {}
    return A, {}

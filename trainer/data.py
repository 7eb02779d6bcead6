"""Spectral datasets for training: loading ``.npz``, CSV and JCAMP-DX files, and validating them once, at the door.

A :class:`SpectralDataset` holds the spectra, their axis, the reference values and the per-row metadata
(``split``, ``instrument``, ``sample_id``, ``groups``, ``meta_*``) that the split selectors and grouped
cross-validation use. Every loader ends in :func:`validate_dataset`, so later stages can trust the arrays.

JCAMP-DX files are parsed by the ``jcamp`` package (a maintained reader of the format's compressed ASDF forms);
it is imported only when a JCAMP file is loaded.

Examples
--------
>>> import numpy as np
>>> ds = SpectralDataset(X=np.ones((12, 3)) * np.arange(12)[:, None], wavelengths=np.array([900.0, 902.0, 904.0]),
...                      y=np.arange(12.0)[:, None], target_names=("fat_pct",))
>>> validate_dataset(ds).n_samples
12
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from trainer.errors import DataError

__all__ = [
    "MIN_SAMPLES",
    "SpectralDataset",
    "load_dataset",
    "load_configured",
    "load_synthetic",
    "load_npz",
    "load_csv",
    "load_jcamp",
    "validate_dataset",
]

log = logging.getLogger(__name__)

#: Fewest rows a dataset may have: below this no calibration, cross-validation or conformal limit means anything.
MIN_SAMPLES = 10

#: Arrays of an ``.npz`` file that are not per-row metadata.
_CORE_KEYS = frozenset({"X", "wavelengths", "y", "target_names", "class_names"})

_JCAMP_SUFFIXES = (".jdx", ".dx", ".jcamp")


@dataclass(frozen=True)
class SpectralDataset:
    """Spectra with their axis, reference values and per-row metadata.

    Parameters
    ----------
    X : ndarray, shape (n_samples, n_channels), float64
        Spectra, usually absorbance (log(1/T) or log(1/R)).
    wavelengths : ndarray, shape (n_channels,), float64
        Spectral axis, strictly monotonic, in ``axis_unit``.
    y : ndarray, shape (n_samples, n_targets)
        Reference values, float64 for regression; int64 class indices into ``class_names`` for classification.
    target_names : tuple of str, length n_targets
        Name of each column of ``y``.
    class_names : tuple of str or None
        Class labels when the dataset is a classification problem, else None.
    columns : mapping of str to ndarray, each shape (n_samples,)
        Per-row metadata such as ``split``, ``instrument``, ``sample_id``, ``groups`` or ``meta_*``.
    source : str
        Where the data came from (a file name), for messages and the report.
    axis_unit : str
        Unit of ``wavelengths``: ``"nm"`` or ``"cm-1"``.
    """

    X: np.ndarray
    wavelengths: np.ndarray
    y: np.ndarray
    target_names: tuple[str, ...]
    class_names: tuple[str, ...] | None = None
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)
    source: str = "<memory>"
    axis_unit: str = "nm"

    @property
    def n_samples(self) -> int:
        """Number of rows (spectra)."""
        return int(self.X.shape[0])

    @property
    def n_channels(self) -> int:
        """Number of spectral channels."""
        return int(self.X.shape[1])

    @property
    def is_classification(self) -> bool:
        """True when ``y`` holds class indices into ``class_names``."""
        return self.class_names is not None

    def column(self, name: str) -> np.ndarray:
        """Per-row metadata column ``name``, shape (n_samples,); :class:`DataError` naming what exists if absent."""
        if name not in self.columns:
            known = ", ".join(sorted(self.columns)) or "none"
            raise DataError(f"{self.source}: no per-row column {name!r}; available columns: {known}")
        return self.columns[name]

    def select_targets(self, names: Sequence[str]) -> SpectralDataset:
        """Keep only the targets ``names`` (in that order); :class:`DataError` when one is missing."""
        if not names:
            raise DataError(f"{self.source}: expected at least one target name, got none")
        index = []
        for name in names:
            if name not in self.target_names:
                raise DataError(
                    f"{self.source}: target {name!r} not found; available targets: {', '.join(self.target_names)}"
                )
            index.append(self.target_names.index(name))
        return replace(self, y=self.y[:, index], target_names=tuple(names))

    def subset(self, rows: np.ndarray) -> SpectralDataset:
        """Rows ``rows`` (integer indices or boolean mask) of every per-row array."""
        return replace(
            self,
            X=self.X[rows],
            y=self.y[rows],
            columns={k: v[rows] for k, v in self.columns.items()},
        )


def validate_dataset(ds: SpectralDataset, *, min_samples: int = MIN_SAMPLES) -> SpectralDataset:
    """Check shapes, finiteness, axis monotonicity, targets and row count; return ``ds`` unchanged when valid.

    Raises
    ------
    DataError
        With a message naming the file and what was expected, e.g. "expected 650 wavelengths, got 649".
    """
    src = ds.source
    X = ds.X
    if X.ndim != 2:
        raise DataError(f"{src}: expected X with 2 dimensions (samples x channels), got shape {X.shape}")
    n, p = X.shape
    if n < min_samples:
        raise DataError(f"{src}: expected at least {min_samples} samples, got {n}")
    if p < 2:
        raise DataError(f"{src}: expected at least 2 spectral channels, got {p}")
    bad = ~np.isfinite(X)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(
            f"{src}: X holds {int(bad.sum())} NaN/infinite values in {rows.size} spectra (first at row {int(rows[0])})"
        )
    wl = ds.wavelengths
    if wl.ndim != 1 or wl.shape[0] != p:
        raise DataError(f"{src}: expected {p} wavelengths (one per channel), got shape {wl.shape}")
    if not np.all(np.isfinite(wl)):
        raise DataError(f"{src}: wavelength axis holds NaN/infinite values")
    step = np.diff(wl)
    if not (np.all(step > 0) or np.all(step < 0)):
        where = int(np.flatnonzero(np.sign(step) != np.sign(step[0]))[0]) + 1 if np.any(step != 0) else 1
        raise DataError(
            f"{src}: expected a strictly monotonic wavelength axis, but it turns or repeats at channel {where} "
            f"({wl[where - 1]:g} -> {wl[where]:g} {ds.axis_unit})"
        )
    y = ds.y
    if y.ndim != 2 or y.shape[0] != n:
        raise DataError(f"{src}: expected y with {n} rows (one per spectrum) and 2 dimensions, got shape {y.shape}")
    if y.shape[1] == 0:
        raise DataError(f"{src}: expected at least one target column, got none")
    if len(ds.target_names) != y.shape[1]:
        raise DataError(f"{src}: expected {y.shape[1]} target names (one per y column), got {len(ds.target_names)}")
    if ds.class_names is not None:
        if y.shape[1] != 1:
            raise DataError(f"{src}: classification expects one label column, got {y.shape[1]}")
        k = len(ds.class_names)
        if k < 2:
            raise DataError(f"{src}: classification expects at least 2 classes, got {k}")
        if y.min() < 0 or y.max() >= k:
            raise DataError(f"{src}: class indices must lie in [0, {k - 1}], got [{int(y.min())}, {int(y.max())}]")
    else:
        for j, name in enumerate(ds.target_names):
            missing = ~np.isfinite(y[:, j])
            if missing.any():
                raise DataError(
                    f"{src}: target {name!r} is missing (NaN) for {int(missing.sum())} of {n} samples "
                    f"(first at row {int(np.flatnonzero(missing)[0])})"
                )
    for key, col in ds.columns.items():
        if col.shape != (n,):
            raise DataError(f"{src}: expected column {key!r} with {n} rows, got shape {col.shape}")
    return ds


def _as_str_tuple(a: np.ndarray | Sequence[str]) -> tuple[str, ...]:
    return tuple(str(s) for s in np.asarray(a).ravel())


def load_npz(path: str | Path, *, axis_unit: str = "nm", min_samples: int = MIN_SAMPLES) -> SpectralDataset:
    """Load a dataset in the ``../shared/datasets`` ``.npz`` layout.

    Parameters
    ----------
    path : path
        ``.npz`` file with ``X`` (n, p), ``wavelengths`` (p,), ``y`` (n,) or (n, t) and ``target_names`` (t,);
        optionally ``class_names`` (classification) and any per-row 1-D arrays (split, instrument, sample_id, ...).
    axis_unit : str
        Unit of the wavelength axis (``"nm"`` or ``"cm-1"``); the file does not record it.
    min_samples : int
        Fewest rows accepted.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from exc
    return _from_arrays(arrays, str(path), path.name, axis_unit=axis_unit, min_samples=min_samples)


def load_synthetic(samples: int, channels: int, seed: int, *, min_samples: int = MIN_SAMPLES) -> SpectralDataset:
    """The spectra ``spectro-sim`` streams without ``--dataset``: :func:`firmware_bridge.synthetic.make_synthetic_dataset`
    with ``--synthetic-samples``, ``--synthetic-channels`` and ``--seed`` (absorbance, nm; a ``split`` column)."""
    from firmware_bridge.synthetic import make_synthetic_dataset  # noqa: PLC0415

    arrays = {k: np.asarray(v) for k, v in make_synthetic_dataset(samples, seed=seed, n_channels=channels).items()}
    name = f"synthetic(samples={samples}, channels={channels}, seed={seed})"
    return _from_arrays(arrays, name, name, axis_unit="nm", min_samples=min_samples)


def _from_arrays(
    arrays: Mapping[str, np.ndarray], where: str, source: str, *, axis_unit: str, min_samples: int
) -> SpectralDataset:
    for key in ("X", "wavelengths", "y"):
        if key not in arrays:
            raise DataError(f"{where}: expected an array named {key!r}; found {', '.join(sorted(arrays))}")
    X = np.asarray(arrays["X"], dtype=np.float64)
    y_raw = np.asarray(arrays["y"])
    y_raw = y_raw[:, None] if y_raw.ndim == 1 else y_raw
    class_names = _as_str_tuple(arrays["class_names"]) if "class_names" in arrays else None
    y = y_raw.astype(np.int64) if class_names is not None else y_raw.astype(np.float64)
    if "target_names" in arrays:
        target_names = _as_str_tuple(arrays["target_names"])
    else:
        target_names = tuple(f"y{j}" for j in range(y.shape[1] if y.ndim == 2 else 1))
    n = X.shape[0] if X.ndim == 2 else -1
    columns = {k: v for k, v in arrays.items() if k not in _CORE_KEYS and v.ndim == 1 and v.shape[0] == n}
    ds = SpectralDataset(
        X=X,
        wavelengths=np.asarray(arrays["wavelengths"], dtype=np.float64),
        y=y,
        target_names=target_names,
        class_names=class_names,
        columns=columns,
        source=source,
        axis_unit=axis_unit,
    )
    return validate_dataset(ds, min_samples=min_samples)


def _parse_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _column_array(values: list[str]) -> np.ndarray:
    """A metadata column as int64 when every cell is an integer, float64 when numeric, else str."""
    try:
        as_int = np.array([int(v) for v in values], dtype=np.int64)
        return as_int
    except ValueError:
        pass
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        return np.array(values, dtype=str)


def load_csv(
    path: str | Path,
    *,
    targets: Sequence[str],
    task: str = "regression",
    axis_unit: str = "nm",
    min_samples: int = MIN_SAMPLES,
) -> SpectralDataset:
    """Load a CSV whose header row holds the wavelength of each spectral column.

    Header cells that parse as numbers are spectral channels (their value is the wavelength); the other columns
    are targets (those named in ``targets``) or per-row metadata (split, instrument, sample_id, ...).

    Parameters
    ----------
    path : path
        Comma-separated file, one spectrum per row.
    targets : sequence of str
        Names of the target columns.
    task : {"regression", "classification"}
        With classification, the single target column holds labels; ``class_names`` are its sorted distinct values.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if len(rows) < 2:
        raise DataError(f"{path}: expected a header row and data rows, got {len(rows)} rows")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    for i, r in enumerate(body, start=2):
        if len(r) != len(header):
            raise DataError(f"{path}: line {i}: expected {len(header)} fields (as in the header), got {len(r)}")
    spectral = [(j, _parse_float(h)) for j, h in enumerate(header)]
    spec_idx = [j for j, v in spectral if v is not None]
    if len(spec_idx) < 2:
        raise DataError(f"{path}: expected a header row whose spectral columns are wavelengths, found none")
    wl = np.array([v for _, v in spectral if v is not None], dtype=np.float64)
    meta_idx = {header[j]: j for j, v in spectral if v is None}
    missing = [t for t in targets if t not in meta_idx]
    if missing:
        raise DataError(
            f"{path}: target column(s) {', '.join(map(repr, missing))} not found; "
            f"non-spectral columns: {', '.join(meta_idx) or 'none'}"
        )
    try:
        X = np.array([[float(r[j]) if r[j].strip() else np.nan for j in spec_idx] for r in body], dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{path}: non-numeric value in a spectral column ({exc})") from exc
    class_names: tuple[str, ...] | None = None
    if task == "classification":
        if len(targets) != 1:
            raise DataError(f"{path}: classification expects exactly one target column, got {len(targets)}")
        labels = [r[meta_idx[targets[0]]].strip() for r in body]
        class_names = tuple(sorted(set(labels)))
        y = np.array([[class_names.index(v)] for v in labels], dtype=np.int64)
    else:
        def num(text: str, t: str, line: int) -> float:
            if not text.strip():
                return np.nan
            v = _parse_float(text)
            if v is None:
                raise DataError(f"{path}: line {line}: target {t!r} is not a number: {text!r}")
            return v

        y = np.array(
            [[num(r[meta_idx[t]], t, i) for t in targets] for i, r in enumerate(body, start=2)], dtype=np.float64
        )
    columns = {
        name: _column_array([r[j].strip() for r in body]) for name, j in meta_idx.items() if name not in targets
    }
    ds = SpectralDataset(
        X=X,
        wavelengths=wl,
        y=y,
        target_names=tuple(targets),
        class_names=class_names,
        columns=columns,
        source=path.name,
        axis_unit=axis_unit,
    )
    return validate_dataset(ds, min_samples=min_samples)


def _jcamp_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _JCAMP_SUFFIXES)
        if not files:
            raise DataError(f"{path}: expected JCAMP-DX files ({', '.join(_JCAMP_SUFFIXES)}) in this folder, found none")
        return files
    if not path.is_file():
        raise DataError(f"{path}: no such JCAMP-DX file or folder")
    return [path]


def load_jcamp(
    path: str | Path,
    *,
    targets: Sequence[str],
    targets_path: str | Path | None = None,
    task: str = "regression",
    axis_unit: str = "nm",
    min_samples: int = MIN_SAMPLES,
) -> SpectralDataset:
    """Load JCAMP-DX spectra, one spectrum per file, from a file or a folder of ``.jdx``/``.dx`` files.

    Reference values come from ``targets_path`` (a CSV with a ``file`` column naming each JCAMP file and one
    column per target, plus optional metadata columns), or else from header labels of each file named like the
    targets (``##$ASSAY_MG=201.3`` is target ``assay_mg``). All files must share one wavelength axis.
    """
    try:
        import jcamp  # noqa: PLC0415  (optional dependency, only needed for this format)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("reading JCAMP-DX needs the 'jcamp' package (pip install jcamp)") from exc
    path = Path(path)
    files = _jcamp_files(path)
    table: dict[str, dict[str, str]] = {}
    if targets_path is not None:
        tpath = Path(targets_path)
        if not tpath.is_file():
            raise DataError(f"{tpath}: no such targets file")
        with tpath.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "file" not in reader.fieldnames:
                raise DataError(f"{tpath}: expected a header with a 'file' column naming each JCAMP-DX file")
            for row in reader:
                table[Path(row["file"].strip()).name] = {k: (v or "").strip() for k, v in row.items()}
    spectra: list[np.ndarray] = []
    wl: np.ndarray | None = None
    labels: list[list[str]] = []
    meta_rows: list[dict[str, str]] = []
    for f in files:
        try:
            d: dict[str, Any] = jcamp.jcamp_readfile(str(f)) if hasattr(jcamp, "jcamp_readfile") else jcamp.readfile(
                str(f)
            )
        except Exception as exc:  # the reader raises assorted builtins on malformed files
            raise DataError(f"{f.name}: not a readable JCAMP-DX file ({type(exc).__name__}: {exc})") from exc
        if "x" not in d or "y" not in d:
            raise DataError(f"{f.name}: JCAMP-DX file holds no XY data block")
        x = np.asarray(d["x"], dtype=np.float64)
        yv = np.asarray(d["y"], dtype=np.float64)
        if wl is None:
            wl = x
        elif x.shape != wl.shape or not np.allclose(x, wl, rtol=0, atol=1e-6 * max(1.0, float(np.abs(wl).max()))):
            raise DataError(
                f"{f.name}: wavelength axis differs from {files[0].name}'s "
                f"(expected {wl.size} points {wl[0]:g}-{wl[-1]:g}, got {x.size} points {x[0]:g}-{x[-1]:g})"
            )
        spectra.append(yv)
        if table:
            if f.name not in table:
                raise DataError(f"{targets_path}: no row for JCAMP-DX file {f.name!r}")
            row = table[f.name]
            labels.append([row.get(t, "") for t in targets])
            meta_rows.append({k: v for k, v in row.items() if k not in targets and k != "file"})
        else:
            lowered = {str(k).lower().lstrip("$"): v for k, v in d.items()}
            labels.append([str(lowered.get(t.lower(), "")) for t in targets])
            meta_rows.append({})
    assert wl is not None
    missing = [t for j, t in enumerate(targets) if all(lab[j] == "" for lab in labels)]
    if missing:
        raise DataError(
            f"{path.name}: target(s) {', '.join(map(repr, missing))} not found in the JCAMP-DX headers"
            + (" or the targets file" if table else " (give a targets CSV with a 'file' column)")
        )
    X = np.vstack(spectra)
    class_names: tuple[str, ...] | None = None
    if task == "classification":
        vals = [lab[0] for lab in labels]
        class_names = tuple(sorted(set(vals)))
        y = np.array([[class_names.index(v)] for v in vals], dtype=np.int64)
    else:
        try:
            y = np.array([[float(v) if v != "" else np.nan for v in lab] for lab in labels], dtype=np.float64)
        except ValueError as exc:
            raise DataError(f"{path.name}: non-numeric target value ({exc})") from exc
    columns: dict[str, np.ndarray] = {"file": np.array([f.name for f in files], dtype=str)}
    keys = sorted({k for m in meta_rows for k in m})
    for k in keys:
        columns[k] = _column_array([m.get(k, "") for m in meta_rows])
    ds = SpectralDataset(
        X=X,
        wavelengths=wl,
        y=y,
        target_names=tuple(targets),
        class_names=class_names,
        columns=columns,
        source=path.name,
        axis_unit=axis_unit,
    )
    return validate_dataset(ds, min_samples=min_samples)


def load_dataset(
    path: str | Path,
    *,
    targets: Sequence[str] | None = None,
    fmt: str | None = None,
    task: str | None = None,
    targets_path: str | Path | None = None,
    axis_unit: str = "nm",
    min_samples: int = MIN_SAMPLES,
) -> SpectralDataset:
    """Load a dataset by format (``"npz"``, ``"csv"``, ``"jcamp"``; inferred from the suffix when None).

    ``targets`` selects and orders the targets (required for CSV and JCAMP-DX); ``task`` forces
    ``"regression"`` or ``"classification"`` (an ``.npz`` with ``class_names`` is classification).
    """
    path = Path(path)
    if fmt is None:
        suffix = path.suffix.lower()
        if suffix == ".npz":
            fmt = "npz"
        elif suffix in (".csv", ".txt"):
            fmt = "csv"
        elif suffix in _JCAMP_SUFFIXES or path.is_dir():
            fmt = "jcamp"
        else:
            raise DataError(f"{path}: cannot tell the format from suffix {suffix!r}; expected .npz, .csv or .jdx/.dx")
    if fmt == "npz":
        ds = load_npz(path, axis_unit=axis_unit, min_samples=min_samples)
        if task == "classification" and ds.class_names is None:
            labels = ds.y[:, 0]
            classes = np.unique(labels)
            ds = replace(
                ds,
                y=np.searchsorted(classes, labels)[:, None].astype(np.int64),
                class_names=tuple(str(c) for c in classes),
            )
        elif task == "regression" and ds.class_names is not None:
            raise DataError(f"{path.name}: holds class labels (class_names) but the task is regression")
        if targets:
            ds = ds.select_targets(targets)
        return ds
    if not targets:
        raise DataError(f"{path}: the target column names must be given for {fmt} data")
    if fmt == "csv":
        return load_csv(path, targets=targets, task=task or "regression", axis_unit=axis_unit, min_samples=min_samples)
    if fmt == "jcamp":
        return load_jcamp(
            path,
            targets=targets,
            targets_path=targets_path,
            task=task or "regression",
            axis_unit=axis_unit,
            min_samples=min_samples,
        )
    raise DataError(f"unknown data format {fmt!r}; expected one of npz, csv, jcamp")


def load_configured(data: Any) -> SpectralDataset:
    """Load what a config's ``[data]`` table names (:class:`trainer.config.DataConfig`): a file, or synthetic
    spectra."""
    if data.synthetic is not None:
        ds = load_synthetic(data.synthetic.samples, data.synthetic.channels, data.synthetic.seed,
                            min_samples=data.min_samples)
        return ds.select_targets(list(data.targets)) if data.targets else ds
    return load_dataset(
        data.path,
        targets=list(data.targets),
        fmt=data.format,
        task=data.task,
        targets_path=data.targets_path,
        axis_unit=data.axis_unit,
        min_samples=data.min_samples,
    )

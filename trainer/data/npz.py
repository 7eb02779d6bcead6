"""The ``.npz`` loader (the ``../shared/datasets`` layout) and the synthetic dataset ``spectro-sim`` streams."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data.cells import _as_bool, _label_text
from trainer.data.dataset import MIN_SAMPLES, SpectralDataset, _as_str_tuple
from trainer.data.raw import _check_unit, _finish, _Raw
from trainer.errors import DataError, did_you_mean

#: Arrays of an ``.npz`` file that are not per-row metadata.
_CORE_KEYS = frozenset({"X", "wavelengths", "y", "target_names", "class_names"})


def load_npz(
    path: str | Path,
    *,
    axis_unit: str | None = None,
    min_samples: int = MIN_SAMPLES,
    task: str | None = None,
    exclude: Mapping[str, Any] | None = None,
    missing_reference: str = "error",
) -> SpectralDataset:
    """Load a dataset in the ``../shared/datasets`` ``.npz`` layout.

    Parameters
    ----------
    path : path
        ``.npz`` file with ``X`` (n, p), ``wavelengths`` (p,), ``y`` (n,) or (n, t) and ``target_names`` (t,);
        optionally ``class_names`` (classification) and any per-row 1-D arrays (split, instrument, sample_id, ...).
    axis_unit : {"nm", "cm-1"} or None
        Unit of the wavelength axis; the file does not record it (None means nm).
    min_samples : int
        Fewest rows accepted.
    task : {"regression", "classification"} or None
        Classification without ``class_names`` takes the distinct values of ``y`` as classes (numeric ones named
        ``"0"``, ``"1"``, sorted by value); regression with ``class_names`` is refused. None follows the file.
    exclude : mapping of str to value or list, optional
        Rows to drop: ``{"sample_id": ["s1", "s7"]}`` drops rows whose column matches any listed value.
    missing_reference : {"error", "drop"}
        What to do with rows whose reference value is NaN.
    """
    path = Path(path)
    return _finish(
        _npz_raw(path, axis_unit=axis_unit, task=task),
        exclude=exclude,
        missing_reference=missing_reference,
        min_samples=min_samples,
    )


def read_npz(path: Path, *, missing: str, unreadable: Callable[[Exception], str]) -> dict[str, np.ndarray]:
    """Every array of the .npz file ``path`` (no pickles); :class:`DataError` ``missing`` when there is no such file,
    ``unreadable(exc)`` when numpy cannot read it."""
    if not path.is_file():
        raise DataError(missing)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise DataError(unreadable(exc)) from exc


def _npz_raw(path: Path, *, axis_unit: str | None, task: str | None, targets: Sequence[str] | None = None) -> _Raw:
    arrays = read_npz(path, missing=f"{path}: no such data file",
                      unreadable=lambda exc: f"{path}: not a readable .npz file ({exc})")
    return _arrays_raw(arrays, str(path), path.name, axis_unit=axis_unit, task=task, targets=targets)


def load_synthetic(
    samples: int,
    channels: int,
    seed: int,
    *,
    min_samples: int = MIN_SAMPLES,
    exclude: Mapping[str, Any] | None = None,
) -> SpectralDataset:
    """The spectra ``spectro-sim`` streams without ``--dataset``.

    :func:`firmware_bridge.synthetic.make_synthetic_dataset` with ``--synthetic-samples``, ``--synthetic-channels``
    and ``--seed`` (absorbance, nm; a ``split`` column); ``exclude`` as in :func:`load_csv`."""
    from firmware_bridge.synthetic import make_synthetic_dataset

    arrays = {k: np.asarray(v) for k, v in make_synthetic_dataset(samples, seed=seed, n_channels=channels).items()}
    name = f"synthetic(samples={samples}, channels={channels}, seed={seed})"
    raw = _arrays_raw(arrays, name, name, axis_unit="nm", task=None)
    return _finish(raw, exclude=exclude, missing_reference="error", min_samples=min_samples)


def _arrays_raw(
    arrays: Mapping[str, np.ndarray],
    where: str,
    source: str,
    *,
    axis_unit: str | None,
    task: str | None,
    targets: Sequence[str] | None = None,
) -> _Raw:
    _check_unit(axis_unit)
    for key in ("X", "wavelengths", "y"):
        if key not in arrays:
            raise DataError(f"{where}: expected an array named {key!r}; found {', '.join(sorted(arrays))}")
    X = np.asarray(arrays["X"], dtype=np.float64)
    y_raw = np.asarray(arrays["y"])
    y_raw = y_raw[:, None] if y_raw.ndim == 1 else y_raw
    preset = _as_str_tuple(arrays["class_names"]) if "class_names" in arrays else None
    if preset is not None and task == "regression":
        raise DataError(f"{source}: holds class labels (class_names) but the task is regression")
    if "target_names" in arrays:
        target_names = _as_str_tuple(arrays["target_names"])
    else:
        target_names = tuple(f"y{j}" for j in range(y_raw.shape[1] if y_raw.ndim == 2 else 1))
    if targets:
        index = []
        for name in targets:
            if name not in target_names:
                raise DataError(f"{source}: target {name!r} not found{did_you_mean(name, target_names)}; "
                                f"available targets: {', '.join(target_names)}")
            index.append(target_names.index(name))
        if y_raw.ndim == 2 and y_raw.shape[1] == len(target_names):
            y_raw = y_raw[:, index]
        target_names = tuple(targets)
    n = X.shape[0] if X.ndim == 2 else -1
    columns: dict[str, np.ndarray | list[str]] = {}
    for k, v in arrays.items():
        if k in _CORE_KEYS or v.ndim != 1 or v.shape[0] != n:
            continue
        as_bool = _as_bool([str(s) for s in v]) if v.dtype.kind in "US" else None
        columns[k] = as_bool if as_bool is not None else v
    missing = [""] * max(n, 0)
    labels: list[str] | None = None
    y: np.ndarray | None = None
    if preset is not None:
        y = y_raw.astype(np.int64)
    elif task == "classification":
        if y_raw.ndim != 2 or y_raw.shape[1] != 1:
            raise DataError(f"{source}: classification expects one label column, got y of shape {y_raw.shape}")
        if y_raw.dtype.kind in "US":
            labels = [str(v).strip() for v in y_raw[:, 0]]
        else:
            values = y_raw[:, 0].astype(np.float64)
            labels = ["" if not np.isfinite(v) else _label_text(v) for v in values]
        for i, lab in enumerate(labels[: max(n, 0)]):
            if not lab:
                missing[i] = f"row {i}: {target_names[0]} is empty"
    else:
        if y_raw.dtype.kind in "USO":
            raise DataError(f"{source}: expected numeric y for regression, got {y_raw.dtype} values")
        y = y_raw.astype(np.float64)
        if y.ndim == 2 and y.shape[0] == n:
            for i in np.flatnonzero(~np.isfinite(y).all(axis=1)):
                bad = [t for t, v in zip(target_names, y[i]) if not np.isfinite(v)]
                missing[i] = f"row {i}: {', '.join(bad)} is NaN"
    return _Raw(
        X=X,
        wavelengths=np.asarray(arrays["wavelengths"], dtype=np.float64),
        axis_unit=axis_unit or "nm",
        target_names=target_names,
        y=y,
        labels=labels,
        class_names=preset,
        columns=columns,
        source=source,
        missing=missing,
    )

"""Dispatch: :func:`load_dataset` picks the loader by suffix, :func:`load_configured` reads a ``[data]`` section."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trainer.data.dataset import MIN_SAMPLES, SpectralDataset
from trainer.data.delimited import load_csv
from trainer.data.jcamp import _JCAMP_SUFFIXES, load_jcamp
from trainer.data.npz import _npz_raw, load_synthetic
from trainer.data.raw import _finish
from trainer.errors import DataError


def load_dataset(
    path: str | Path,
    *,
    targets: Sequence[str] | None = None,
    fmt: str | None = None,
    task: str | None = None,
    targets_path: str | Path | None = None,
    axis_unit: str | None = None,
    min_samples: int = MIN_SAMPLES,
    join_on: str | None = None,
    delimiter: str = "auto",
    decimal: str = "auto",
    exclude: Mapping[str, Any] | None = None,
    missing_reference: str = "error",
) -> SpectralDataset:
    """Load a dataset by format (``"npz"``, ``"csv"``, ``"jcamp"``; inferred from the suffix when None).

    ``targets`` selects and orders the targets (required for CSV and JCAMP-DX); ``task`` forces
    ``"regression"`` or ``"classification"`` (an ``.npz`` with ``class_names`` is classification). The other
    keywords are those of :func:`load_csv` (``targets_path`` is refused for ``.npz``, whose ``y`` holds the
    references).
    """
    path = Path(path)
    if fmt is None:
        suffix = path.suffix.lower()
        if suffix == ".npz":
            fmt = "npz"
        elif suffix in (".csv", ".txt", ".tsv"):
            fmt = "csv"
        elif suffix in _JCAMP_SUFFIXES or path.is_dir():
            fmt = "jcamp"
        else:
            raise DataError(f"{path}: cannot tell the format from suffix {suffix!r}; expected .npz, .csv or .jdx/.dx")
    if fmt == "npz":
        if targets_path is not None:
            raise DataError(
                f"{path.name}: targets_path is for CSV and JCAMP-DX spectra; expected the reference values in the "
                ".npz's y, got a targets file"
            )
        raw = _npz_raw(path, axis_unit=axis_unit, task=task, targets=targets)
        return _finish(raw, exclude=exclude, missing_reference=missing_reference, min_samples=min_samples)
    if fmt not in ("csv", "jcamp"):
        raise DataError(f"unknown data format {fmt!r}; expected one of npz, csv, jcamp")
    if not targets:
        raise DataError(f"{path}: the target column names must be given for {fmt} data")
    loader = load_csv if fmt == "csv" else load_jcamp
    return loader(
        path,
        targets=targets,
        task=task or "regression",
        targets_path=targets_path,
        axis_unit=axis_unit,
        min_samples=min_samples,
        join_on=join_on,
        delimiter=delimiter,
        decimal=decimal,
        exclude=exclude,
        missing_reference=missing_reference,
    )


def load_configured(data: Any) -> SpectralDataset:
    """Load what a config's ``[data]`` table names (:class:`trainer.config.DataConfig`): a file, or synthetic
    spectra."""
    if data.synthetic is not None:
        ds = load_synthetic(data.synthetic.samples, data.synthetic.channels, data.synthetic.seed,
                            min_samples=data.min_samples, exclude=dict(data.exclude) or None)
        return ds.select_targets(list(data.targets)) if data.targets else ds
    for key, path in (("path", data.path), ("targets_path", data.targets_path)):
        if path is not None and not Path(path).exists():
            raise DataError(f"data.{key}: no such file {Path(path).resolve()} (a relative path in a config is taken "
                            "from the config file's folder)")
    return load_dataset(
        data.path,
        targets=list(data.targets),
        fmt=data.format,
        task=data.task,
        targets_path=data.targets_path,
        axis_unit=data.axis_unit,
        min_samples=data.min_samples,
        join_on=data.join_on,
        delimiter=data.delimiter,
        decimal=data.decimal,
        exclude=dict(data.exclude) or None,
        missing_reference=data.missing_reference,
    )

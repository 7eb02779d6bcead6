"""The JCAMP-DX loader (one file or a folder of them), parsed by the ``jcamp`` package, imported on use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data.cells import _MISSING_TOKENS, _cell_number
from trainer.data.dataset import MIN_SAMPLES, SpectralDataset
from trainer.data.raw import _check_unit, _finish, _Raw
from trainer.data.references import _join_references, _parse_targets
from trainer.errors import DataError

_JCAMP_SUFFIXES = (".jdx", ".dx", ".jcamp")


def _jcamp_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _JCAMP_SUFFIXES)
        if not files:
            raise DataError(
                f"{path}: expected JCAMP-DX files ({', '.join(_JCAMP_SUFFIXES)}) in this folder, found none"
            )
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
    axis_unit: str | None = None,
    min_samples: int = MIN_SAMPLES,
    join_on: str | None = None,
    delimiter: str = "auto",
    decimal: str = "auto",
    exclude: Mapping[str, Any] | None = None,
    missing_reference: str = "error",
) -> SpectralDataset:
    """Load JCAMP-DX spectra, one spectrum per file, from a file or a folder of ``.jdx``/``.dx`` files.

    Reference values come from ``targets_path`` (a CSV joined on its ``file`` column, which names each JCAMP
    file; only base names are compared; one column per target, plus optional metadata columns), or else from
    header labels of each file named like the targets (``##$ASSAY_MG=201.3`` is target ``assay_mg``). All files
    must share one wavelength axis. ``delimiter`` and ``decimal`` apply to the targets CSV; ``exclude`` and
    ``missing_reference`` as in :func:`load_csv` (each row has a ``file`` column).
    """
    raw = _jcamp_raw(
        Path(path), targets=targets, targets_path=targets_path, task=task, axis_unit=axis_unit, join_on=join_on,
        delimiter=delimiter, decimal=decimal,
    )
    return _finish(raw, exclude=exclude, missing_reference=missing_reference, min_samples=min_samples)


def _jcamp_raw(
    path: Path,
    *,
    targets: Sequence[str],
    targets_path: str | Path | None,
    task: str,
    axis_unit: str | None,
    join_on: str | None,
    delimiter: str,
    decimal: str,
) -> _Raw:
    _check_unit(axis_unit)
    try:
        import jcamp  # (optional dependency, only needed for this format)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("reading JCAMP-DX needs the 'jcamp' package (pip install jcamp)") from exc
    if task == "classification" and len(targets) != 1:
        raise DataError(f"{path.name}: classification expects exactly one target column, got {len(targets)}")
    files = _jcamp_files(path)
    spectra: list[np.ndarray] = []
    wl: np.ndarray | None = None
    header_labels: list[dict[str, Any]] = []
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
        header_labels.append({str(k).lower().lstrip("$"): v for k, v in d.items()})
    assert wl is not None
    names = [f.name for f in files]
    columns: dict[str, np.ndarray | list[str]] = {"file": np.array(names, dtype=str)}
    y: np.ndarray | None
    labels: list[str] | None
    if targets_path is not None:
        if (join_on or "file") != "file":
            raise DataError(
                f"join_on: expected 'file' for JCAMP-DX spectra (joined on their file name), got {join_on!r}"
            )
        ref, joined = _join_references(
            Path(targets_path), names, join_on="file", targets=targets, taken=["file"],
            spectra_name=path.name, delimiter=delimiter, decimal=decimal,
            key_of=lambda s: Path(s.strip()).name,
        )
        columns.update(joined)
        y, labels, missing = _parse_targets(ref, targets, task)
    else:
        absent = [t for t in targets if all(t.lower() not in h for h in header_labels)]
        if absent:
            raise DataError(
                f"{path.name}: target(s) {', '.join(map(repr, absent))} not found in the JCAMP-DX headers "
                "(give a targets CSV with a 'file' column)"
            )
        missing = [""] * len(files)
        if task == "classification":
            y = None
            labels = [str(h.get(targets[0].lower(), "")).strip() for h in header_labels]
            for i, lab in enumerate(labels):
                if not lab:
                    missing[i] = f"{names[i]}: no ##${targets[0].upper()} label"
        else:
            labels = None
            y = np.full((len(files), len(targets)), np.nan)
            for i, h in enumerate(header_labels):
                for k, t in enumerate(targets):
                    text = str(h.get(t.lower(), "")).strip()
                    if text.lower() in _MISSING_TOKENS:
                        missing[i] = missing[i] or f"{names[i]}: no ##${t.upper()} value"
                        continue
                    v = _cell_number(text, comma_decimal=False)
                    if v is None:
                        raise DataError(f"{names[i]}: ##${t.upper()}: expected a number, got {text!r}")
                    y[i, k] = v
    return _Raw(
        X=np.vstack(spectra),
        wavelengths=wl,
        axis_unit=axis_unit or "nm",
        target_names=tuple(targets),
        y=y,
        labels=labels,
        class_names=None,
        columns=columns,
        source=path.name,
        missing=missing,
    )

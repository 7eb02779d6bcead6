"""Spectral datasets for training: loading ``.npz``, CSV and JCAMP-DX files, and validating them once, at the door.

A :class:`SpectralDataset` holds the spectra, their axis, the reference values and the per-row metadata
(``split``, ``instrument``, ``sample_id``, ``groups``, ``meta_*``) that the split selectors and grouped
cross-validation use. Every loader ends in :func:`validate_dataset`, so later stages can trust the arrays.

Delimited text is read as a user's spreadsheet writes it: UTF-8 with or without a byte-order mark, comma,
semicolon or tab (detected), decimal commas beside a semicolon or tab, wavelength headers with units
(``1100 nm``, ``1.00100e+03cm-1``), and reference values from a second file joined on a key column. Before the
checks, ``exclude`` drops rows and rows without a reference value are refused (or dropped); a bad cell is
reported with its file, line and column (``data.csv line 7, column 12 (1104 nm): expected a number, got 'n/a'``).

JCAMP-DX files are parsed by the ``jcamp`` package (a maintained reader of the format's compressed ASDF forms);
it is imported only when a JCAMP file is loaded.

Layout: :mod:`~trainer.data.dataset` (the dataset and its checks), :mod:`~trainer.data.cells` and
:mod:`~trainer.data.table` (spreadsheet text), :mod:`~trainer.data.raw` (the common finish),
:mod:`~trainer.data.npz`, :mod:`~trainer.data.delimited` (CSV), :mod:`~trainer.data.references` (reference values
joined from a second file), :mod:`~trainer.data.jcamp`, and :mod:`~trainer.data.load` (dispatch by suffix or
``[data]`` section).

Examples
--------
>>> import numpy as np
>>> ds = SpectralDataset(X=np.ones((12, 3)) * np.arange(12)[:, None], wavelengths=np.array([900.0, 902.0, 904.0]),
...                      y=np.arange(12.0)[:, None], target_names=("fat_pct",))
>>> validate_dataset(ds).n_samples
12
"""

from __future__ import annotations

from trainer.data.dataset import MIN_SAMPLES, SpectralDataset, validate_dataset
from trainer.data.delimited import load_csv
from trainer.data.jcamp import load_jcamp
from trainer.data.load import load_configured, load_dataset
from trainer.data.npz import load_npz, load_synthetic

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

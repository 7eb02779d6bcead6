"""Transfer samples: pairing master and slave rows by ``sample_id``, choosing a few, loading them from ``.npz``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from trainer.data.npz import read_npz
from trainer.errors import CalibrationError, DataError
from trainer.transfer.model import FloatArray


def pair_by_sample_id(
    X: npt.ArrayLike,
    instrument: npt.ArrayLike,
    sample_id: npt.ArrayLike,
    *,
    master: Any = 1,
    slave: Any = 2,
    rows: npt.ArrayLike | None = None,
) -> tuple[FloatArray, FloatArray, np.ndarray]:
    """Paired master and slave spectra of the samples measured on both instruments.

    Parameters
    ----------
    X : ndarray, shape (n_rows, p)
    instrument, sample_id : ndarray, shape (n_rows,)
    master, slave
        Instrument values.
    rows : ndarray of bool or int, optional
        Restrict to these rows (for example the training split).

    Returns
    -------
    X_master, X_slave : ndarray, shape (n_pairs, p)
        Row ``k`` of both is sample ``ids[k]``.
    ids : ndarray, shape (n_pairs,)
        Sample ids in first-appearance order of the master rows.

    Raises
    ------
    DataError
        When a sample id is repeated on one instrument or no sample is on both.
    """
    X = np.asarray(X, dtype=np.float64)
    pm, ps = paired_rows(X.shape[0], instrument, sample_id, master=master, slave=slave, rows=rows)
    return X[pm], X[ps], np.asarray(sample_id)[pm]


def paired_rows(
    n_rows: int,
    instrument: npt.ArrayLike,
    sample_id: npt.ArrayLike,
    *,
    master: Any = 1,
    slave: Any = 2,
    rows: npt.ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(master_rows, slave_rows)`` of the samples on both instruments (see :func:`pair_by_sample_id`)."""
    inst = np.asarray(instrument)
    sid = np.asarray(sample_id)
    if not (n_rows == inst.shape[0] == sid.shape[0]):
        raise DataError(
            f"expected X, instrument and sample_id with one row count, got {n_rows}, {inst.shape[0]}, {sid.shape[0]}"
        )
    sel = np.ones(n_rows, dtype=bool)
    if rows is not None:
        r = np.asarray(rows)
        sel = r.astype(bool) if r.dtype == bool else np.isin(np.arange(n_rows), r)
    m_rows = np.flatnonzero(sel & (inst == master))
    s_rows = np.flatnonzero(sel & (inst == slave))
    for name, rr in (("master", m_rows), ("slave", s_rows)):
        uniq, counts = np.unique(sid[rr], return_counts=True)
        if np.any(counts > 1):
            raise DataError(
                f"sample id {uniq[counts > 1][0].item()!r} repeats on the {name} instrument; "
                "expected one row per sample"
            )
    slave_of = dict(zip(sid[s_rows].tolist(), s_rows.tolist()))
    pm: list[int] = []
    ps: list[int] = []
    for row, key in zip(m_rows.tolist(), sid[m_rows].tolist()):
        match = slave_of.get(key)
        if match is not None:
            pm.append(int(row))
            ps.append(int(match))
    if not pm:
        raise DataError("expected samples measured on both instruments, got none")
    return np.array(pm, dtype=np.int64), np.array(ps, dtype=np.int64)


def kennard_stone(X: npt.ArrayLike, n: int) -> np.ndarray:
    """Indices of ``n`` rows of ``X`` chosen by the Kennard-Stone algorithm (uniform cover of the spectral space).

    Starts with the two most distant rows, then repeatedly adds the row farthest from those chosen.
    """
    X = np.asarray(X, dtype=np.float64)
    m = X.shape[0]
    if not 1 <= n <= m:
        raise DataError(f"expected 1 <= n <= {m} samples to select, got {n}")
    sq = np.sum(X * X, axis=1)
    D = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * X @ X.T, 0.0))
    if n == 1:
        return np.array([int(np.argmin(np.sum((X - X.mean(axis=0)) ** 2, axis=1)))])
    i, j = np.unravel_index(int(np.argmax(D)), D.shape)
    chosen = [int(i), int(j)]
    dmin = np.minimum(D[i], D[j])
    while len(chosen) < n:
        dmin[chosen] = -1.0
        k = int(np.argmax(dmin))
        chosen.append(k)
        dmin = np.minimum(dmin, D[k])
    return np.array(chosen[:n])


def select_transfer_samples(
    X_master: npt.ArrayLike, n: int, *, method: str = "kennard-stone", seed: int = 0
) -> np.ndarray:
    """Row indices of ``n`` transfer samples among candidate master spectra (``kennard-stone`` or ``random``)."""
    X = np.asarray(X_master, dtype=np.float64)
    if method == "kennard-stone":
        return kennard_stone(X - X.mean(axis=0), n)
    if method == "random":
        if not 1 <= n <= X.shape[0]:
            raise DataError(f"expected 1 <= n <= {X.shape[0]} samples to select, got {n}")
        return np.sort(np.random.default_rng(seed).choice(X.shape[0], size=n, replace=False))
    raise CalibrationError(f"unknown selection method {method!r}; expected kennard-stone or random")
def load_transfer_pairs(
    path: str | Path,
    *,
    master: Any = 1,
    slave: Any = 2,
    split: str | None = None,
    n: int | None = None,
    selection: str = "kennard-stone",
    seed: int = 0,
) -> tuple[FloatArray, FloatArray, np.ndarray, FloatArray]:
    """Paired transfer spectra from an ``.npz`` in the ``../shared/datasets`` layout.

    Parameters
    ----------
    path : str or Path
        ``.npz`` with ``X`` (rows, p), ``wavelengths`` (p,), ``instrument`` and ``sample_id`` (rows,), optionally
        ``split`` (rows,); ``y`` is not needed.
    master, slave
        Instrument values (the file's ``instrument`` array; numbers or strings as stored).
    split : str, optional
        Use only rows of this split (e.g. the training split, so no test sample is used for transfer).
    n : int, optional
        Keep ``n`` pairs chosen by ``selection`` (``kennard-stone`` on the master spectra, or ``random``).

    Returns
    -------
    X_master, X_slave : ndarray, shape (n_pairs, p)
    ids : ndarray, shape (n_pairs,)
    wavelengths : ndarray, shape (p,)
    """
    p = Path(path)
    arrays = read_npz(p, missing=f"{p}: no such file of paired spectra",
                      unreadable=lambda exc: f"{p}: not a readable .npz file ({exc})")
    for key in ("X", "wavelengths", "instrument", "sample_id"):
        if key not in arrays:
            raise DataError(f"{p}: expected an array named {key!r}; found {', '.join(sorted(arrays))}")
    inst = arrays["instrument"]
    if inst.dtype.kind in "iuf":
        master, slave = type(inst.flat[0].item())(master), type(inst.flat[0].item())(slave)
    else:
        master, slave = str(master), str(slave)
    rows = None
    if split is not None:
        if "split" not in arrays:
            raise DataError(f"{p}: no 'split' array to select split {split!r}")
        rows = arrays["split"] == split
        if not rows.any():
            raise DataError(
                f"{p}: no rows of split {split!r}; splits are {', '.join(map(str, np.unique(arrays['split'])))}"
            )
    Xm, Xs, ids = pair_by_sample_id(arrays["X"], inst, arrays["sample_id"], master=master, slave=slave, rows=rows)
    if n is not None:
        idx = select_transfer_samples(Xm, n, method=selection, seed=seed)
        Xm, Xs, ids = Xm[idx], Xs[idx], ids[idx]
    return Xm, Xs, ids, np.asarray(arrays["wavelengths"], dtype=np.float64)

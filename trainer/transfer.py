"""Calibration transfer between instruments: DS and PDS fitted from paired spectra, as the edge's ``linear`` step.

A model calibrated on a *master* instrument (instrument 1) is carried to a *slave* (instrument 2) by mapping slave
spectra into the master's domain, ``X_master ~ X_slave @ F + b``, with ``F`` and ``b`` fitted from a few transfer
samples measured on both. The map is an :class:`edge.preprocess.LinearTransfer` step inserted where the pipeline's
data are absorbance on the model grid (``pipeline.transfer_index``: after the ``counts`` and ``resample`` steps,
before everything the trainer fitted), so the device applies it with no code change and the model, its
preprocessing, OOD statistics and intervals stay untouched.

Methods
-------
``ds``  Direct standardisation: one full ``(p, p)`` map. With far fewer transfer samples than channels the
        least-squares problem is underdetermined; the classic minimum-norm solution ``pinv(Xs) Xm`` projects every
        new spectrum onto the span of the transfer spectra and throws the rest away. Here the map is regularised
        *towards the identity* (``F = I + D``, ``D`` the ridge / minimum-norm solution of
        ``Xm - Xs = Xs D``), so what the transfer samples do not describe passes through unchanged.
``pds`` Piecewise direct standardisation (Wang, Veltkamp and Kowalski 1991): each master channel is regressed on a
        window of slave channels around it (truncated-SVD pseudo-inverse, also towards the identity), giving a
        banded ``F``; the additive offset ``b`` carries the mean difference. The window width is chosen by
        leave-one-out cross-validation over the transfer samples (mean squared error of the reconstructed master
        spectra, optionally after a caller-supplied preprocessing such as SNV + derivative, which is what the
        model sees).

Why hand-written: DS/PDS are a few lines of linear algebra on numpy; no maintained scikit-learn-compatible
package implements PDS with an edge-exportable linear form.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> Xm = rng.normal(size=(12, 40)).cumsum(axis=1)
>>> Xs = 1.05 * Xm + 0.1
>>> t = fit_pds(Xm, Xs, window=5)
>>> bool(np.allclose(t.transform(Xs), Xm, atol=1e-6))
True
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from trainer.errors import CalibrationError, DataError

__all__ = [
    "DEFAULT_PDS_WINDOWS",
    "DEFAULT_RCOND",
    "TransferModel",
    "add_transfer_arguments",
    "choose_pds_window",
    "evaluate_transfer",
    "finetune_cnn",
    "fit_ds",
    "fit_pds",
    "fit_transfer",
    "insert_transfer",
    "kennard_stone",
    "load_transfer_pairs",
    "pair_by_sample_id",
    "paired_rows",
    "rmsep",
    "run_transfer_command",
    "select_transfer_samples",
    "transfer_bundle",
    "transfer_rows_for_run",
]

log = logging.getLogger(__name__)

#: PDS window widths (channels, odd) tried by cross-validation when none is given.
DEFAULT_PDS_WINDOWS: tuple[int, ...] = (1, 3, 5, 7, 9, 11, 15, 21, 31)
#: Relative singular-value cut-off of the pseudo-inverses (as ``numpy.linalg.pinv``'s ``rcond``).
DEFAULT_RCOND = 1e-3
#: Methods :func:`fit_transfer` knows.
METHODS = ("ds", "pds")

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TransferModel:
    """A fitted calibration transfer: ``X_master ~ X_slave @ matrix + offset``.

    Attributes
    ----------
    method : {"ds", "pds"}
    matrix : ndarray, shape (p, p), float64
        ``F``; banded for PDS.
    offset : ndarray, shape (p,), float64
        ``b``, in absorbance units.
    n_transfer : int
        Transfer samples it was fitted from.
    window : int or None
        PDS window width (channels); None for DS.
    cv_mse : dict of int to float
        PDS: leave-one-out mean squared reconstruction error per window tried (empty when the window was given).
    """

    method: str
    matrix: FloatArray
    offset: FloatArray
    n_transfer: int
    window: int | None = None
    cv_mse: Mapping[int, float] = field(default_factory=dict)

    def transform(self, X_slave: npt.ArrayLike) -> FloatArray:
        """Map slave spectra, shape (p,) or (n, p), into the master's domain."""
        X = np.asarray(X_slave, dtype=np.float64)
        if X.shape[-1] != self.matrix.shape[0]:
            raise DataError(f"expected {self.matrix.shape[0]} channels, got {X.shape[-1]}")
        out: FloatArray = X @ self.matrix + self.offset
        return out

    def to_edge_step(self) -> Any:
        """The edge ``linear`` step (:class:`edge.preprocess.LinearTransfer`) computing :meth:`transform`."""
        from edge.preprocess import LinearTransfer

        return LinearTransfer(self.matrix, self.offset)

    def to_dict(self) -> dict[str, Any]:
        """Summary for ``metrics.json`` (no matrix)."""
        return {
            "method": self.method,
            "n_transfer": self.n_transfer,
            "window": self.window,
            "cv_mse": {str(k): float(v) for k, v in self.cv_mse.items()},
        }


# ------------------------------------------------------------------------------------------------ fitting


def _check_pair(X_master: npt.ArrayLike, X_slave: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    Xm = np.asarray(X_master, dtype=np.float64)
    Xs = np.asarray(X_slave, dtype=np.float64)
    if Xm.ndim != 2 or Xs.ndim != 2:
        raise DataError(f"expected 2-D master and slave spectra, got shapes {Xm.shape} and {Xs.shape}")
    if Xm.shape != Xs.shape:
        raise DataError(f"expected paired master and slave spectra of one shape, got {Xm.shape} and {Xs.shape}")
    if Xm.shape[0] < 2:
        raise DataError(f"expected at least 2 transfer samples, got {Xm.shape[0]}")
    if not (np.all(np.isfinite(Xm)) and np.all(np.isfinite(Xs))):
        raise DataError("expected finite transfer spectra, got NaN or inf")
    return Xm, Xs


def _pinv_solve(A: FloatArray, B: FloatArray, rcond: float, alpha: float) -> FloatArray:
    """Minimum-norm (truncated SVD, or ridge when ``alpha > 0``) solution of ``A @ X = B``; batched over axis 0."""
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    smax = s.max(axis=-1, keepdims=True) if s.size else s
    if alpha > 0:
        inv = s / (s * s + alpha * (smax * smax))
    else:
        with np.errstate(divide="ignore"):
            inv = np.where(s > rcond * smax, 1.0 / np.where(s > 0, s, 1.0), 0.0)
    UtB = np.swapaxes(U, -1, -2) @ B
    return np.swapaxes(Vt, -1, -2) @ (inv[..., :, None] * UtB)


def fit_ds(
    X_master: npt.ArrayLike,
    X_slave: npt.ArrayLike,
    *,
    rcond: float = DEFAULT_RCOND,
    alpha: float = 0.0,
    toward_identity: bool = True,
) -> TransferModel:
    """Direct standardisation from paired transfer spectra.

    Parameters
    ----------
    X_master, X_slave : ndarray, shape (n, p)
        The same ``n`` samples on the master and the slave (absorbance on the model grid, rows paired).
    rcond : float
        Relative singular-value cut-off of the pseudo-inverse.
    alpha : float
        Ridge strength relative to the largest squared singular value (0: truncated SVD only).
    toward_identity : bool
        Regularise towards ``F = I`` (default) instead of ``F = 0`` (classic DS).

    Returns
    -------
    TransferModel
    """
    Xm, Xs = _check_pair(X_master, X_slave)
    mm, ms = Xm.mean(axis=0), Xs.mean(axis=0)
    A, B = Xs - ms, Xm - mm
    p = Xm.shape[1]
    if toward_identity:
        F = np.eye(p) + _pinv_solve(A, B - A, rcond, alpha)
    else:
        F = _pinv_solve(A, B, rcond, alpha)
    return TransferModel("ds", F, mm - ms @ F, n_transfer=int(Xm.shape[0]))


def _window_bounds(p: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    half = window // 2
    i = np.arange(p)
    lo = np.clip(i - half, 0, max(p - window, 0))
    hi = np.minimum(lo + window, p)
    return lo, hi


def _pds_matrix(A: FloatArray, B: FloatArray, window: int, rcond: float, toward_identity: bool) -> FloatArray:
    """Banded ``F`` (p, p) regressing each centred master channel ``B[:, i]`` on the slave window around ``i``."""
    p = A.shape[1]
    w = min(window, p)
    lo, _ = _window_bounds(p, w)
    idx = lo[:, None] + np.arange(w)[None, :]  # (p, w) slave channels of each master channel
    Aw = np.transpose(A[:, idx], (1, 0, 2))  # (p, n, w)
    target = B.T[:, :, None]  # (p, n, 1)
    if toward_identity:
        target = target - A.T[:, :, None]
    coef = _pinv_solve(Aw, target, rcond, 0.0)[:, :, 0]  # (p, w)
    F = np.zeros((p, p))
    cols = np.repeat(np.arange(p), w)
    F[idx.ravel(), cols] = coef.ravel()
    if toward_identity:
        F[np.arange(p), np.arange(p)] += 1.0
    return F


def choose_pds_window(
    X_master: npt.ArrayLike,
    X_slave: npt.ArrayLike,
    *,
    windows: Sequence[int] = DEFAULT_PDS_WINDOWS,
    rcond: float = DEFAULT_RCOND,
    toward_identity: bool = True,
    score_transform: Callable[[FloatArray], FloatArray] | None = None,
) -> tuple[int, dict[int, float]]:
    """Choose the PDS window width by leave-one-out cross-validation over the transfer samples.

    Parameters
    ----------
    X_master, X_slave : ndarray, shape (n, p)
        Paired transfer spectra (n >= 3).
    windows : sequence of int
        Candidate widths (channels).
    rcond, toward_identity
        As :func:`fit_pds`.
    score_transform : callable, optional
        Applied to the reconstructed and the true master spectra before the squared error (for example the
        model's SNV + derivative, so the criterion weighs what the model sees rather than baseline offsets).

    Returns
    -------
    window : int
        The width with the lowest mean squared error (the smallest among ties within 1 %).
    cv_mse : dict of int to float
        Mean squared error per width.
    """
    Xm, Xs = _check_pair(X_master, X_slave)
    n, p = Xm.shape
    if n < 3:
        raise DataError(f"expected at least 3 transfer samples to cross-validate the PDS window, got {n}")
    tf = score_transform if score_transform is not None else (lambda X: X)
    cv: dict[int, float] = {}
    truth = tf(Xm)
    for w in sorted({int(v) for v in windows}):
        if w < 1:
            raise DataError(f"expected PDS windows >= 1 channel, got {w}")
        if w > p:
            continue
        pred = np.empty_like(Xm)
        for k in range(n):
            keep = np.arange(n) != k
            t = fit_pds(Xm[keep], Xs[keep], window=w, rcond=rcond, toward_identity=toward_identity)
            pred[k] = t.transform(Xs[k])
        cv[w] = float(np.mean((tf(pred) - truth) ** 2))
    if not cv:
        raise DataError(f"no PDS window fits {p} channels; tried {sorted(windows)}")
    best = min(cv.values())
    window = min(w for w, v in cv.items() if v <= best * 1.01)
    return window, cv


def fit_pds(
    X_master: npt.ArrayLike,
    X_slave: npt.ArrayLike,
    *,
    window: int | None = None,
    windows: Sequence[int] = DEFAULT_PDS_WINDOWS,
    rcond: float = DEFAULT_RCOND,
    toward_identity: bool = True,
    score_transform: Callable[[FloatArray], FloatArray] | None = None,
) -> TransferModel:
    """Piecewise direct standardisation from paired transfer spectra, with its additive offset.

    Parameters
    ----------
    X_master, X_slave : ndarray, shape (n, p)
        The same ``n`` samples on the master and the slave (absorbance on the model grid, rows paired).
    window : int, optional
        Window width (channels); chosen by :func:`choose_pds_window` over ``windows`` when None.
    windows, score_transform
        Cross-validation candidates and criterion (see :func:`choose_pds_window`).
    rcond : float
        Relative singular-value cut-off of each window's pseudo-inverse.
    toward_identity : bool
        Regress the master-minus-slave difference (default), so an unexplained direction passes unchanged.

    Returns
    -------
    TransferModel
    """
    Xm, Xs = _check_pair(X_master, X_slave)
    cv: dict[int, float] = {}
    if window is None:
        window, cv = choose_pds_window(
            Xm, Xs, windows=windows, rcond=rcond, toward_identity=toward_identity, score_transform=score_transform
        )
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise DataError(f"expected a PDS window >= 1 channel, got {window!r}")
    mm, ms = Xm.mean(axis=0), Xs.mean(axis=0)
    F = _pds_matrix(Xs - ms, Xm - mm, int(window), rcond, toward_identity)
    return TransferModel("pds", F, mm - ms @ F, n_transfer=int(Xm.shape[0]), window=int(window), cv_mse=cv)


def fit_transfer(
    X_master: npt.ArrayLike, X_slave: npt.ArrayLike, *, method: str = "pds", window: int | None = None, **kwargs: Any
) -> TransferModel:
    """Fit ``method`` (``"ds"`` or ``"pds"``); keyword arguments go to :func:`fit_ds` / :func:`fit_pds`."""
    if method == "ds":
        if window is not None:
            raise CalibrationError("expected no window for DS (it maps the whole spectrum)")
        return fit_ds(X_master, X_slave, **kwargs)
    if method == "pds":
        return fit_pds(X_master, X_slave, window=window, **kwargs)
    raise CalibrationError(f"unknown transfer method {method!r}; expected one of {', '.join(METHODS)}")


# ------------------------------------------------------------------------------------------------ sample handling


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


# ------------------------------------------------------------------------------------------------ bundles


def insert_transfer(pipeline: Any, transfer: TransferModel) -> Any:
    """New edge pipeline with the transfer's ``linear`` step at ``pipeline.transfer_index``.

    The step sees absorbance on the model grid (after any ``counts`` and ``resample`` steps) and comes before
    every step the trainer fitted, so the model and its preprocessing are reused unchanged.

    Raises
    ------
    CalibrationError
        When the pipeline already has a ``linear`` step, or its width at the insertion point differs.
    """
    from edge.errors import SpecError
    from edge.preprocess import LinearTransfer

    if any(isinstance(s, LinearTransfer) for s in pipeline.steps):
        raise CalibrationError("the pipeline already holds a linear (transfer) step; start from the master bundle")
    try:
        return pipeline.insert(pipeline.transfer_index, transfer.to_edge_step())
    except SpecError as exc:
        raise CalibrationError(f"cannot insert the transfer step: {exc}") from exc


def _next_version(version: str) -> str:
    """``1.0.0`` -> ``1.0.0-inst2``-style successor that stays a valid id (``[A-Za-z0-9._-]``, 64 chars)."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d%H%M%S")  # noqa: UP017 - Python 3.10
    v = re.sub(r"[^A-Za-z0-9._-]", "_", f"{version}-transfer.{stamp}")
    return v[:64]


def transfer_bundle(
    bundle_path: str | Path,
    slave_X: npt.ArrayLike,
    master_X: npt.ArrayLike,
    out_path: str | Path,
    *,
    method: str = "pds",
    window: int | None = None,
    model_version: str | None = None,
    public_key: bytes | str | Path | None = None,
    private_key_path: str | Path | None = None,
    **fit_kwargs: Any,
) -> Path:
    """Write a bundle for a second instrument: same model, a fitted transfer step inserted, a new model version.

    Parameters
    ----------
    bundle_path : str or Path
        The master instrument's bundle (loaded and self-tested with :func:`edge.bundle.load_bundle`).
    slave_X, master_X : ndarray, shape (n, n_channels)
        The same ``n`` transfer samples (rows paired) on the slave and on the master, as the bundle's frames carry
        them on the model grid: absorbance when the bundle reads absorbance. For a counts bundle, pass the
        absorbance on the model grid (the transfer step sits after the counts conversion).
    out_path : str or Path
        New bundle path (``.spectrolite``).
    method : {"pds", "ds"}
    window : int, optional
        PDS window; chosen by cross-validation when None.
    model_version : str, optional
        Version of the new bundle (default: the old one with a ``-transfer.<UTC stamp>`` suffix).
    public_key : optional
        Verify the input bundle's signature with this key.
    private_key_path : optional
        Sign the new bundle.
    **fit_kwargs
        Passed to :func:`fit_transfer` (``rcond``, ``windows``, ...).

    Returns
    -------
    Path
        The written bundle (re-loaded and self-tested by :func:`trainer.bundle.write_bundle`).

    Notes
    -----
    The golden vectors keep their raw inputs and get new expected outputs computed by the edge code through the
    new pipeline. Metrics gain a ``transfer`` entry (method, window, n_transfer, parent model version).
    """
    from edge.bundle import MODEL, load_bundle, read_members
    from edge.errors import EdgeError
    from trainer.bundle import write_bundle

    try:
        old = load_bundle(bundle_path, public_key=public_key)
    except EdgeError as exc:
        raise CalibrationError(f"input bundle {bundle_path}: {exc}") from exc
    transfer = fit_transfer(master_X, slave_X, method=method, window=window, **fit_kwargs)
    new_pipeline = insert_transfer(old.pipeline, transfer)
    m = old.manifest
    metrics = dict(old.metrics)
    metrics["transfer"] = {
        **transfer.to_dict(), "parent_model_version": old.model_version, "parent_sha256": old.file_sha256
    }
    members, _ = read_members(old.path)
    tflite = members[MODEL]
    g = old.golden
    tol = {k: v for k, v in m["golden"].items() if k != "count"}
    return write_bundle(
        out_path,
        model_id=old.model_id,
        model_version=model_version or _next_version(old.model_version),
        task=old.task,
        targets=[t.to_dict() for t in old.targets],
        wavelengths=old.wavelengths,
        tflite_bytes=tflite,
        pipeline=new_pipeline,
        metrics=metrics,
        golden_inputs=g.raw,
        training_data_sha256=m["training_data_sha256"],
        seed=int(m["seed"]),
        class_labels=list(old.class_labels) or None,
        wavelength_unit=m["wavelength_grid"]["unit"],
        input_contract=m["input_contract"],
        ood=old.ood,
        intervals=old.intervals,
        golden_dark=g.dark,
        golden_reference=g.reference,
        golden_wavelengths=g.wavelengths,
        golden_tolerance=tol,
        library_versions=m.get("library_versions"),
        private_key_path=private_key_path,
    )


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
    if not p.is_file():
        raise DataError(f"{p}: no such file of paired spectra")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{p}: not a readable .npz file ({exc})") from exc
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


def add_transfer_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``spectro-train transfer`` (the CLI calls :func:`run_transfer_command` with the result)."""
    parser.add_argument("bundle", type=Path, help="bundle of the master instrument (.spectrolite)")
    parser.add_argument("--pairs", type=Path, required=True,
                        help=".npz with X, wavelengths, instrument and sample_id (rows paired by sample_id)")
    parser.add_argument("--out", type=Path, required=True, help="new bundle for the slave instrument (.spectrolite)")
    parser.add_argument("--method", choices=METHODS, default="pds", help="calibration transfer method (default pds)")
    parser.add_argument("--window", type=int, default=None, help="PDS window in channels (default: cross-validated)")
    parser.add_argument("--master", default="1", help="instrument value of the master (default 1)")
    parser.add_argument("--slave", default="2", help="instrument value of the slave (default 2)")
    parser.add_argument("--split", default=None, help="use only transfer rows of this split (e.g. the training split)")
    parser.add_argument("--n-transfer", type=int, default=None,
                        help="use this many pairs, chosen by Kennard-Stone on the master spectra (default: all)")
    parser.add_argument("--model-version", default=None, help="version of the new bundle (default: derived)")
    parser.add_argument("--public-key", type=Path, default=None, help="verify the input bundle's signature")
    parser.add_argument("--private-key", type=Path, default=None, help="sign the new bundle (PEM private key)")


def run_transfer_command(args: argparse.Namespace) -> int:
    """``spectro-train transfer``: fit DS/PDS from paired spectra and write the slave instrument's bundle.

    Prints the new bundle path, the method, window and number of pairs to stdout; returns 0. Errors are
    :class:`~trainer.errors.TrainerError` / :class:`~edge.errors.EdgeError` for the CLI to print as one line.
    """
    from edge.bundle import load_bundle

    Xm, Xs, _ids, wl = load_transfer_pairs(
        args.pairs, master=args.master, slave=args.slave, split=args.split, n=args.n_transfer
    )
    grid = load_bundle(args.bundle, public_key=args.public_key, self_test=False).wavelengths
    if grid.shape == wl.shape and not np.allclose(grid, wl, atol=float(np.min(np.abs(np.diff(grid)))) / 2):
        raise DataError(
            f"expected paired spectra on the bundle's grid {grid[0]:g}-{grid[-1]:g}, got {wl[0]:g}-{wl[-1]:g}"
        )
    out = transfer_bundle(
        args.bundle, Xs, Xm, args.out, method=args.method, window=args.window, model_version=args.model_version,
        public_key=args.public_key, private_key_path=args.private_key,
    )
    b = load_bundle(out, public_key=None)
    t = b.metrics["transfer"]
    print(f"bundle: {out} (model {b.model_id} {b.model_version})")
    print(f"transfer: {t['method']}, {t['n_transfer']} pairs" + (f", window {t['window']}" if t["window"] else ""))
    return 0


# ------------------------------------------------------------------------------------------------ fine-tuning


def finetune_cnn(
    keras_model: Any,
    X_transfer_pre: npt.ArrayLike,
    y_transfer: npt.ArrayLike,
    *,
    X_anchor_pre: npt.ArrayLike | None = None,
    y_anchor: npt.ArrayLike | None = None,
    epochs: int = 60,
    learning_rate: float = 3e-4,
    batch_size: int = 16,
    freeze_convolutions: bool = False,
    seed: int = 0,
) -> Any:
    """Fine-tune a copy of a regression CNN on slave transfer spectra (the alternative to DS/PDS).

    Parameters
    ----------
    keras_model : keras.Model
        Trained model (preprocessed spectra -> reference units); left unchanged.
    X_transfer_pre : ndarray, shape (n, *input_shape)
        Slave transfer spectra after the model's preprocessing.
    y_transfer : ndarray, shape (n,) or (n, n_outputs)
        Their reference values.
    X_anchor_pre, y_anchor : ndarray, optional
        Master training rows mixed in (each epoch) so the network does not forget instrument 1; recommended with
        few transfer samples.
    epochs, learning_rate, batch_size, seed
        Training settings (Adam, MSE loss on reference units scaled by the training spread).
    freeze_convolutions : bool
        Train only the dense layers.

    Returns
    -------
    keras.Model
        The fine-tuned copy.
    """
    import keras

    keras.utils.set_random_seed(int(seed))
    X = np.asarray(X_transfer_pre, dtype=np.float32)
    y = np.asarray(y_transfer, dtype=np.float32).reshape(X.shape[0], -1)
    if X_anchor_pre is not None and y_anchor is not None:
        Xa = np.asarray(X_anchor_pre, dtype=np.float32)
        ya = np.asarray(y_anchor, dtype=np.float32).reshape(Xa.shape[0], -1)
        # Transfer rows repeated so they weigh like the anchor rows together.
        reps = max(1, Xa.shape[0] // max(X.shape[0], 1))
        X = np.concatenate([np.repeat(X, reps, axis=0), Xa])
        y = np.concatenate([np.repeat(y, reps, axis=0), ya])
    model = keras.models.clone_model(keras_model)
    model.set_weights(keras_model.get_weights())
    if freeze_convolutions:
        for layer in _all_layers(model):
            if isinstance(layer, keras.layers.Conv1D):
                layer.trainable = False
    scale = float(np.std(y)) or 1.0
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=_scaled_mse(scale))
    model.fit(X, y, epochs=int(epochs), batch_size=int(batch_size), shuffle=True, verbose=0)
    return model


def _scaled_mse(scale: float) -> Any:
    import keras

    def loss(y_true: Any, y_pred: Any) -> Any:
        return keras.ops.mean(keras.ops.square((y_true - y_pred) / scale))

    return loss


def _all_layers(model: Any) -> list[Any]:
    out: list[Any] = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out


# ------------------------------------------------------------------------------------------------ evaluation


def rmsep(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Root mean squared error of prediction."""
    a = np.asarray(y_true, dtype=np.float64).ravel()
    b = np.asarray(y_pred, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise DataError(f"expected {a.size} predictions, got {b.size}")
    return float(math.sqrt(np.mean((a - b) ** 2)))


def evaluate_transfer(
    predict: Callable[[FloatArray], npt.ArrayLike],
    *,
    X_test_inst1: npt.ArrayLike,
    X_test_inst2: npt.ArrayLike,
    y_test: npt.ArrayLike,
    X_pool_master: npt.ArrayLike,
    X_pool_slave: npt.ArrayLike,
    n_transfer: Sequence[int] = (5, 10, 20),
    methods: Sequence[str] = ("ds", "pds"),
    model: str = "pls",
    selection: str = "kennard-stone",
    y_pool: npt.ArrayLike | None = None,
    finetune: Callable[[FloatArray, FloatArray, FloatArray], Callable[[FloatArray], npt.ArrayLike]] | None = None,
    seed: int = 0,
    fit_kwargs: Mapping[str, Any] | None = None,
    output: int = 0,
) -> list[dict[str, Any]]:
    """Instrument-2 RMSEP before and after calibration transfer, for ``spectro-bench accuracy`` ``transfer`` rows.

    Parameters
    ----------
    predict : callable
        Absorbance spectra of the master's domain (n, p) -> predictions (n,) or (n, 1), for one target; for
        example ``PlsBaseline.predict`` or ``Bundle.predict_spectra`` of the int8 bundle.
    X_test_inst1, X_test_inst2 : ndarray, shape (m, p)
        Test spectra of the same samples on instrument 1 and 2 (rows need not be paired).
    y_test : ndarray, shape (m,)
        Their reference values (the same for both instruments when the rows are paired).
    X_pool_master, X_pool_slave : ndarray, shape (k, p)
        Paired candidate transfer samples, from the training rows only (see :func:`pair_by_sample_id`).
    n_transfer : sequence of int
        Transfer-set sizes; the first ``n`` of the Kennard-Stone order (nested sets).
    methods : sequence of {"ds", "pds"}
    model : str
        Label written in the rows (``pls``, ``cnn_int8``, ...).
    selection : {"kennard-stone", "random"}
    y_pool : ndarray, shape (k,), optional
        Reference values of the pool; needed by ``finetune``.
    finetune : callable, optional
        ``finetune(X_slave_transfer, y_transfer, X_master_transfer) -> predict_fn`` evaluated as method
        ``finetune`` (the predict function gets raw instrument-2 absorbance).
    seed : int
        Seed of a random selection.
    fit_kwargs : dict, optional
        Passed to :func:`fit_transfer`.
    output : int
        Column of the predictions evaluated (the target's position in a multi-target model).

    Returns
    -------
    list of dict
        One row per (method, n_transfer) plus a ``none`` row (``n_transfer`` 0); keys ``method``, ``n_transfer``,
        ``model``, ``rmsep_inst1``, ``rmsep_inst2``, and ``window`` for PDS.
    """
    X1 = np.asarray(X_test_inst1, dtype=np.float64)
    X2 = np.asarray(X_test_inst2, dtype=np.float64)
    y = np.asarray(y_test, dtype=np.float64).ravel()
    Pm, Ps = _check_pair(X_pool_master, X_pool_slave)

    def pred(fn: Callable[[FloatArray], npt.ArrayLike], X: FloatArray) -> np.ndarray:
        return np.asarray(fn(X), dtype=np.float64).reshape(X.shape[0], -1)[:, output]

    r1 = rmsep(y, pred(predict, X1))
    rows: list[dict[str, Any]] = [
        {
            "method": "none", "n_transfer": 0, "model": model, "rmsep_inst1": r1,
            "rmsep_inst2": rmsep(y, pred(predict, X2)),
        }
    ]
    order = select_transfer_samples(Pm, max(n_transfer), method=selection, seed=seed)
    for n in n_transfer:
        idx = order[:n]
        for method in methods:
            t = fit_transfer(Pm[idx], Ps[idx], method=method, **dict(fit_kwargs or {}))
            row = {
                "method": method,
                "n_transfer": int(n),
                "model": model,
                "rmsep_inst1": r1,
                "rmsep_inst2": rmsep(y, pred(predict, t.transform(X2))),
            }
            if t.window is not None:
                row["window"] = t.window
            rows.append(row)
            log.info("transfer %s n=%d %s: inst2 RMSEP %.4g (inst1 %.4g)", method, n, model, row["rmsep_inst2"], r1)
        if finetune is not None:
            if y_pool is None:
                raise CalibrationError("finetune needs y_pool, the reference values of the transfer pool")
            yp = np.asarray(y_pool, dtype=np.float64).ravel()
            fn = finetune(Ps[idx], yp[idx], Pm[idx])
            rows.append(
                {
                    "method": "finetune",
                    "n_transfer": int(n),
                    "model": model,
                    "rmsep_inst1": rmsep(y, pred(fn, X1)),
                    "rmsep_inst2": rmsep(y, pred(fn, X2)),
                }
            )
    return rows


def transfer_rows_for_run(
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    instrument: npt.ArrayLike,
    sample_id: npt.ArrayLike,
    train_rows: npt.ArrayLike,
    test_rows: npt.ArrayLike,
    master: Any = 1,
    slave: Any = 2,
    pls_predict: Callable[[FloatArray], npt.ArrayLike] | None = None,
    bundle_path: str | Path | None = None,
    keras_model: Any = None,
    n_transfer: Sequence[int] = (5, 10, 20),
    methods: Sequence[str] = ("ds", "pds"),
    finetune_epochs: int = 15,
    seed: int = 0,
    output: int = 0,
) -> list[dict[str, Any]]:
    """``transfer`` rows of ``spectro-bench accuracy`` for one training run (PLS, int8 CNN, CNN fine-tuning).

    Parameters
    ----------
    X : ndarray, shape (n_rows, p)
        All spectra of the dataset (absorbance), both instruments.
    y : ndarray, shape (n_rows,)
        The target evaluated (one column).
    instrument, sample_id : ndarray, shape (n_rows,)
    train_rows, test_rows : ndarray of bool, shape (n_rows,), or indices
        Rows of the training and of the test split (either instrument; they are paired by ``sample_id``). Transfer
        samples come from the training split only.
    master, slave
        Instrument values.
    pls_predict : callable, optional
        Absorbance (n, p) -> predictions of the target (e.g. ``PlsBaseline.predict`` of a one-target run); rows
        with ``model`` ``pls``.
    bundle_path : str or Path, optional
        The run's bundle; its int8 model through the edge pipeline and LiteRT gives rows with ``model``
        ``cnn_int8``.
    keras_model : keras.Model, optional
        The run's float CNN; with ``bundle_path`` adds ``finetune`` rows (fine-tuned copy, converted to int8,
        run by the edge runtime). Slow: one fine-tuning and conversion per transfer-set size.
    n_transfer, methods, seed
        As :func:`evaluate_transfer`.
    output : int
        Position of the target among the outputs of ``pls_predict`` and of the bundle (multi-target models).
        Fine-tuning trains on ``y`` for that output only, so it is offered for single-output models only.

    Returns
    -------
    list of dict
        Rows with keys ``method``, ``n_transfer``, ``model``, ``rmsep_inst1``, ``rmsep_inst2`` (and ``window``).
    """
    Xa = np.asarray(X, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64).reshape(Xa.shape[0], -1)[:, 0]
    inst = np.asarray(instrument)
    sid = np.asarray(sample_id)

    def mask(rows: npt.ArrayLike) -> np.ndarray:
        r = np.asarray(rows)
        return r.astype(bool) if r.dtype == bool else np.isin(np.arange(Xa.shape[0]), r)

    pm, ps = paired_rows(Xa.shape[0], inst, sid, master=master, slave=slave, rows=mask(train_rows))
    tm, ts = paired_rows(Xa.shape[0], inst, sid, master=master, slave=slave, rows=mask(test_rows))
    pool_y = ya[pm]
    common: dict[str, Any] = {
        "X_test_inst1": Xa[tm],
        "X_test_inst2": Xa[ts],
        "y_test": ya[tm],
        "X_pool_master": Xa[pm],
        "X_pool_slave": Xa[ps],
        "n_transfer": n_transfer,
        "methods": methods,
        "seed": seed,
        "output": output,
    }
    rows: list[dict[str, Any]] = []
    if pls_predict is not None:
        rows += evaluate_transfer(pls_predict, model="pls", **common)
    if bundle_path is not None:
        from edge.bundle import load_bundle

        bundle = load_bundle(bundle_path)
        cnn_bundle = bundle.metrics.get("deployed_model", "cnn") == "cnn"
        finetune = None
        if keras_model is not None and cnn_bundle:
            if int(keras_model.output_shape[-1]) != 1:
                raise CalibrationError("fine-tuning comparison needs a single-output CNN; pass keras_model=None")
            finetune = _int8_finetuner(keras_model, bundle, Xa[pm], pool_y, finetune_epochs, seed)
        rows += evaluate_transfer(bundle.predict_signal, model="cnn_int8" if cnn_bundle else "pls_bundle",
                                  y_pool=pool_y, finetune=finetune, **common)
    return rows


def _int8_finetuner(
    keras_model: Any, bundle: Any, X_anchor: FloatArray, y_anchor: np.ndarray, epochs: int, seed: int
) -> Callable[[FloatArray, FloatArray, FloatArray], Callable[[FloatArray], npt.ArrayLike]]:
    """``finetune`` callable for :func:`evaluate_transfer`: fine-tune, convert to int8, run through the bundle."""
    from edge.runtime import ModelRuntime
    from trainer.quantize import convert_int8

    shape = tuple(int(v) for v in keras_model.input_shape[1:])
    anchor_pre = bundle.preprocess_signal(X_anchor).reshape((-1, *shape))

    def run(Xs: FloatArray, ys: FloatArray, Xm: FloatArray) -> Callable[[FloatArray], npt.ArrayLike]:
        tuned = finetune_cnn(
            keras_model, bundle.preprocess_signal(Xs).reshape((-1, *shape)), ys, X_anchor_pre=anchor_pre,
            y_anchor=y_anchor, epochs=epochs, seed=seed,
        )
        runtime = ModelRuntime(convert_int8(tuned, anchor_pre, subprocess=False))
        return lambda A: runtime.predict(bundle.preprocess_signal(A).reshape((-1, *shape)))

    return run

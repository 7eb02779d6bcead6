"""In-control distribution of the deployed model's predictions: what the edge's prediction CUSUM is centred on.

The daemon's prediction-drift monitor (``prediction:<target>``, :class:`edge.drift.DriftMonitor`) runs a CUSUM of
``(prediction - mean) / std``; its false-alarm rate holds only when ``mean`` and ``std`` are those of the
predictions it will see on in-distribution spectra.  Those are not the training reference values' figures: a
prediction of a new spectrum carries the model's own error (and a PLS or a CNN shrinks toward the mean), and on the
line it carries the detector's noise too (at one scan, the noise of the spectrum propagated through the model).
So the bundle's ``targets[i].training`` ``mean`` and ``std`` (:class:`edge.bundle.TargetStats`) are taken from

- the deployed model's **held-out predictions of the training rows** (the out-of-fold predictions the conformal
  intervals use: nested cross-validation of a deployed PLS, the champion's cross-validation of a CNN); without
  them, from its in-sample predictions of the training rows;
- plus, with ``[instrument.noise]``, the **line noise of the prediction**: the deployed model's predictions of the
  line copies of the training rows (:func:`trainer.line_noise.line_spectra`) minus its predictions of the rows
  themselves, added to each row's held-out prediction, copy by copy (the noise grows with the absorbance, so it is
  not independent of the value: its variance is not simply added).

:func:`prediction_stats` returns one :class:`PredictionStats` per target; ``trainer.pipeline.write`` turns them
into the manifest's typed field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PredictionStats", "prediction_stats"]


@dataclass(frozen=True)
class PredictionStats:
    """In-control mean and standard deviation (ddof 0) of one target's predictions, in the target's unit.

    ``n`` is the number of training rows they come from; ``source`` says how they were made: ``out_of_fold`` or
    ``in_sample``, with ``+line_noise`` when the line detector's noise was added; ``line_noise_std`` is that noise's
    standard deviation (0 without ``[instrument.noise]``); ``reference_mean`` and ``reference_std`` are the
    training reference values' figures, for the log and the report.
    """

    mean: float
    std: float
    n: int
    source: str
    line_noise_std: float
    reference_mean: float
    reference_std: float


def prediction_stats(y_train: np.ndarray, held_out: np.ndarray | None, in_sample: np.ndarray,
                     line: np.ndarray | None = None) -> list[PredictionStats]:
    """Per target, the in-control distribution of the deployed model's predictions (see the module docstring).

    Parameters
    ----------
    y_train : ndarray, shape (n, t)
        Training reference values.
    held_out : ndarray, shape (n, t), or None
        Out-of-fold predictions of the training rows; None, or any non-finite value, falls back to ``in_sample``.
    in_sample : ndarray, shape (n, t)
        The deployed model's predictions of the training rows (clean spectra).
    line : ndarray, shape (c, n, t), optional
        Its predictions of ``c`` line copies of the training rows (``[instrument.noise]``).

    Returns
    -------
    list of PredictionStats, one per target
    """
    y = np.asarray(y_train, dtype=np.float64)
    y = y.reshape(y.shape[0], -1)
    fitted = np.asarray(in_sample, dtype=np.float64).reshape(y.shape)
    source = "in_sample"
    base = fitted
    if held_out is not None:
        oof = np.asarray(held_out, dtype=np.float64).reshape(y.shape)
        if np.all(np.isfinite(oof)):
            base, source = oof, "out_of_fold"
    values = base[None]
    noise_sd = np.zeros(y.shape[1])
    if line is not None:  # each held-out prediction with the line noise of each copy of its row
        delta = np.asarray(line, dtype=np.float64).reshape(-1, *y.shape) - fitted[None]
        values = base[None] + delta
        noise_sd = delta.reshape(-1, y.shape[1]).std(axis=0)
        source += "+line_noise"
    flat = values.reshape(-1, y.shape[1])
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    return [PredictionStats(mean=float(mean[j]), std=float(std[j]), n=int(y.shape[0]), source=source,
                            line_noise_std=float(noise_sd[j]), reference_mean=float(y[:, j].mean()),
                            reference_std=float(y[:, j].std()))
            for j in range(y.shape[1])]

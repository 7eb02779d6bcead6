"""Training spectra as the line instrument would measure them: through the detector of ``[instrument.noise]``.

Every spectrum of every copy is read in a session of its own of :class:`firmware_bridge.physics.DetectorModel` (the
detector of ``spectro-sim``): a noisy dark and white reference, then the spectrum turned into counts with shot and
read noise, ``averages`` scans averaged (``reference_averages`` for the dark and the white), rounded by the 16-bit
ADC, and back to the training quantity with
``-log10((S - D) / (W - D))`` (ratio floored at ``min_ratio``, as the bundle's counts step does). A device reads
its dark and white once per session and every spectrum of the session shares their noise; drawing them anew per
spectrum makes the copies span as many reference draws as spectra, so limits fitted on them hold over sessions
rather than for the few sessions a copy-per-session would draw (and a PCA fitted on the copies cannot learn them).
The exposure is the one the simulator picks for these spectra
(:meth:`~firmware_bridge.physics.DetectorModel.integration_time_for`). The noise-whitened OOD model and its limits
are then fitted on these copies (:func:`trainer.drift.fit_ood`, ``X_pre_line``), the PLS may be calibrated on
them (``calibration_copies``, :func:`with_line_copies`) and the CNN trained on them (``cnn_copies``,
:func:`cnn_augment_fn`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from trainer.config.sources import LineNoiseConfig
from trainer.errors import CalibrationError

__all__ = ["line_spectra", "with_line_copies", "cnn_augment_fn", "pixel_variance"]

#: Seed offset of the CNN's line copies (a fold's seed plus this), apart from the PLS's and the OOD model's.
_CNN_COPIES_SEED = 11


def line_spectra(X: np.ndarray, wavelengths: np.ndarray, noise: LineNoiseConfig, *, quantity: str = "absorbance",
                 min_ratio: float = 1e-6, seed: int = 0) -> np.ndarray:
    """``noise.copies`` noisy copies of every spectrum, each spectrum read in a session of its own.

    Parameters
    ----------
    X : ndarray, shape (n, n_channels)
        Training spectra, in ``quantity`` (absorbance, or reflectance as a fraction).
    wavelengths : ndarray, shape (n_channels,)
        Their axis in nm (the lamp and the detector response depend on it).
    noise : LineNoiseConfig
    quantity : {"absorbance", "reflectance"}
    min_ratio : float
        Floor of ``(S - D) / (W - D)``.
    seed : int

    Returns
    -------
    ndarray, shape (noise.copies, n, n_channels), float64
    """
    from firmware_bridge.physics import DetectorModel

    A = np.asarray(X, dtype=np.float64)
    if A.ndim != 2:
        raise CalibrationError(f"line noise: expected spectra of shape (n, channels), got {A.shape}")
    if quantity == "reflectance":
        if np.any(A <= 0):
            raise CalibrationError("line noise: expected reflectance > 0")
        A = -np.log10(A)
    model = DetectorModel(np.asarray(wavelengths, dtype=np.float64), **noise.detector_parameters())
    t_us = model.integration_time_for(A)
    rng = np.random.default_rng([seed, 13])
    out = np.empty((noise.copies, *A.shape))
    av = noise.averages
    for c in range(noise.copies):
        ref_av = noise.reference_averages
        dark = np.stack([model.dark(t_us, rng, averages=ref_av).counts for _ in A]).astype(np.float64)
        white = np.stack([model.reference(t_us, rng, averages=ref_av).counts for _ in A]).astype(np.float64)
        counts = np.stack([model.measure(a, t_us, rng, averages=av).counts for a in A]).astype(np.float64)
        ratio = np.maximum((counts - dark) / np.where(white - dark > 0, white - dark, np.nan), min_ratio)
        ratio = np.nan_to_num(ratio, nan=min_ratio)
        out[c] = ratio if quantity == "reflectance" else -np.log10(ratio)
    return out


def with_line_copies(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, wavelengths: np.ndarray,
                     noise: LineNoiseConfig, *, quantity: str = "absorbance", min_ratio: float = 1e-6,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows ``(X, Y, groups)`` followed by ``noise.calibration_copies`` line copies of them
    (:func:`line_spectra`), each copy with its row's reference values and group (grouped cross-validation keeps a
    sample and its copies on one side): the calibration set of a PLS that must predict what the line measures
    (``[instrument.noise] calibration_copies``). Including the measurement conditions the model will meet in the
    calibration set is the usual way to make a chemometric model robust to them; here, the line detector's noise.
    """
    n = noise.calibration_copies
    if n < 1:
        return X, Y, groups
    copies = line_spectra(X, wavelengths, replace(noise, copies=n), quantity=quantity, min_ratio=min_ratio, seed=seed)
    n += 1
    return (np.concatenate([np.asarray(X, dtype=np.float64), *copies]), np.concatenate([Y] * n),
            np.concatenate([groups] * n))


def cnn_augment_fn(aug: Any, noise: LineNoiseConfig | None, wavelengths_nm: np.ndarray | None, *,
                   quantity: str = "absorbance", min_ratio: float = 1e-6,
                   ) -> Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]:
    """The CNN's training set of some rows: ``augment(X, y, aug, seed)`` (``[augment]``), followed by
    ``noise.cnn_copies`` line copies of the rows (:func:`line_spectra`, reference values copied) when that is set.

    Every place that trains a CNN (a cross-validation fold, a search trial, the final fit) builds its rows with this
    function, so the network the champion rule scores is the one deployed. Bjerrum-style augmentation teaches the
    network the baseline and path-length variation of the lab; the line copies teach it the line detector's noise,
    which a derivative preprocessing amplifies and which the training spectra never carry.

    Returns
    -------
    callable
        ``fn(X, y, seed) -> (X_train, y_train)``.
    """
    from trainer.augment import augment

    n = 0 if noise is None else noise.cnn_copies

    def fn(X: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        Xa, ya = augment(X, y, aug, seed=seed)
        if n < 1 or noise is None or wavelengths_nm is None:
            return Xa, ya
        copies = line_spectra(X, wavelengths_nm, replace(noise, copies=n), quantity=quantity, min_ratio=min_ratio,
                              seed=seed + _CNN_COPIES_SEED)
        return (np.concatenate([np.asarray(Xa, dtype=np.float64), copies.reshape(-1, copies.shape[-1])]),
                np.concatenate([ya, *([np.asarray(y)] * n)]))

    return fn


def pixel_variance(X: np.ndarray, wavelengths: np.ndarray, noise: LineNoiseConfig, *,
                   quantity: str = "absorbance") -> tuple[np.ndarray, dict[str, float]]:
    """Per-pixel variance of each training spectrum as the line detector would measure it, the way the device
    computes it from a frame (:func:`edge.ood_noise.signal_variance`), here from the expected counts of the
    spectrum, its dark and its white at the simulator's exposure for these spectra.

    Returns
    -------
    variance : ndarray, shape (n, n_channels)
    detector : dict
        ``electrons_per_count`` and ``read_noise_counts`` of the detector (what the device needs to do the same).
    """
    from edge.ood_noise import signal_variance
    from firmware_bridge.physics import DetectorModel

    A = np.asarray(X, dtype=np.float64)
    if quantity == "reflectance":
        A = -np.log10(np.clip(A, 1e-12, None))
    model = DetectorModel(np.asarray(wavelengths, dtype=np.float64), **noise.detector_parameters())
    t_us = model.integration_time_for(A)
    dark = model.dark_mean_counts(t_us)
    white = model.expected_counts(None, t_us)
    counts = np.stack([model.expected_counts(a, t_us) for a in A])
    detector = {"electrons_per_count": float(model.electrons_per_count),
                "read_noise_counts": float(model.read_noise_counts)}
    var = signal_variance(counts, dark, white, averages=noise.averages, quantity=quantity, **detector)
    return var, detector

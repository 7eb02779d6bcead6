"""Provoked drifts that act on the spectrum itself rather than on lamp, axis or baseline: rising detector noise and
a product change, each ramping in with :meth:`ProvokedDriftConfig.provoked_weight` like the other provoked drifts.

* ``noise``: white noise of standard deviation ``weight * size`` absorbance units is added to every spectrum (a
  detector whose noise rises, as the host sees it in absorbance; the simulator's own detector noise stays), drawn
  from its own seeded generator so that the detector's noise sequence is the same with and without it;
* ``product``: the spectrum becomes the mixture ``(1 - weight * size) * a + weight * size * b`` of the streamed
  row ``a`` and the row ``b`` of another product (Beer-Lambert absorbance is linear in concentration, so this is
  what a pipe switching products sees while the two mix).  The other product's rows come from
  ``ProvokedDriftConfig.product_dataset`` (a ``.npz`` of the dataset format, ``product_split`` rows of it,
  resampled onto the device's axis), or, when none is named, from the synthetic generator with another seed on the
  device's axis: other components, another matrix, another interferent.

Everything is numpy and pure apart from the seeded generator; :class:`ProvokedSpectrumDrift` is built once per
device and applied in :meth:`VirtualSpectrometer.sample_absorbance`.

>>> import numpy as np
>>> from firmware_bridge.simulator.config import ProvokedDriftConfig, SimulatorConfig
>>> axis = np.linspace(900.0, 1700.0, 16)
>>> drift = ProvokedDriftConfig(drift_at_frame=2, drift_kind="noise", drift_size=0.1, drift_ramp_frames=2)
>>> cfg = SimulatorConfig(drift=drift)
>>> effect = ProvokedSpectrumDrift.of(cfg, axis)
>>> bool(np.all(effect.apply(1, np.zeros(16)) == 0.0)), round(float(np.std(effect.apply(10, np.zeros(10**5)))), 2)
(True, 0.1)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from firmware_bridge.simulator.config import SimulatorConfig, SimulatorError
from firmware_bridge.synthetic import load_npz, make_synthetic_dataset

__all__ = ["SPECTRUM_DRIFT_KINDS", "ProvokedSpectrumDrift", "other_product"]

#: The provoked drift kinds applied here (the others act on lamp, axis, baseline and band in the device).
SPECTRUM_DRIFT_KINDS = ("noise", "product")
#: Seed offset of the synthetic other product when no product dataset is named.
OTHER_PRODUCT_SEED_OFFSET = 1


def other_product(config: SimulatorConfig, axis: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Absorbance rows of the other product on ``axis`` (the device's axis, in its own unit), shape (n, n_pixels).

    ``config.drift.product_dataset`` (its ``product_split`` rows) resampled onto ``axis``, which its axis must
    cover; else a synthetic dataset with seed ``config.seed + 1`` drawn on ``axis`` itself.
    """
    drift = config.drift
    axis = np.asarray(axis, dtype=np.float64)
    if drift.product_dataset is None:
        lo, hi = sorted((float(axis[0]), float(axis[-1])))
        data = make_synthetic_dataset(max(config.synthetic_samples, 50), seed=config.seed + OTHER_PRODUCT_SEED_OFFSET,
                                      n_channels=axis.size, wavelength_range_nm=(lo, hi))
        rows = np.asarray(data["X"], dtype=np.float64)
        return rows[:, ::-1] if axis[-1] < axis[0] else rows  # the generator draws an ascending axis
    data = load_npz(drift.product_dataset)
    x = np.asarray(data["X"], dtype=np.float64)
    if drift.product_split is not None:
        if "split" not in data:
            raise SimulatorError(f"expected a 'split' array in the product dataset to select {drift.product_split!r}"
                                 ", found none")
        x = x[np.asarray(data["split"]).astype(str) == drift.product_split]
        if x.shape[0] == 0:
            found = sorted(set(np.asarray(data["split"]).astype(str)))
            raise SimulatorError(f"expected product rows with split {drift.product_split!r}, found splits {found}")
    own = np.asarray(data["wavelengths"], dtype=np.float64)
    if own.shape == axis.shape and np.allclose(own, axis):
        return x
    lo, hi = float(min(own[0], own[-1])), float(max(own[0], own[-1]))
    if float(axis.min()) < lo - 1e-6 or float(axis.max()) > hi + 1e-6:
        raise SimulatorError(f"expected a product dataset covering the device's axis {float(axis.min()):g}-"
                             f"{float(axis.max()):g}, got {lo:g}-{hi:g}")
    if own[-1] < own[0]:
        own, x = own[::-1], x[:, ::-1]
    return np.stack([np.interp(axis, own, row) for row in x])


@dataclass
class ProvokedSpectrumDrift:
    """The ``noise`` or ``product`` provoked drift of one device (nothing for the other kinds).

    Parameters
    ----------
    config : SimulatorConfig
        The device's settings (its ``drift`` says kind, onset, ramp and size).
    product : ndarray, shape (n, n_pixels), or None
        The other product's absorbance rows (``product`` kind only).
    rng : numpy.random.Generator
        Source of the ``noise`` kind's draws (its own, seeded from the config's seed).
    """

    config: SimulatorConfig
    product: npt.NDArray[np.float64] | None
    rng: np.random.Generator

    @classmethod
    def of(cls, config: SimulatorConfig, axis: npt.NDArray[np.float64]) -> ProvokedSpectrumDrift:
        """The effect of ``config.drift`` on a device with spectral axis ``axis`` (loads the other product)."""
        drift = config.drift
        active = drift.drift_at_frame is not None and drift.drift_kind == "product"
        product = other_product(config, axis) if active else None
        return cls(config, product, np.random.default_rng([config.seed, 3]))

    def apply(self, index: int, absorbance: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """``absorbance`` of spectrum ``index`` (shape (n_pixels,)) with the drift's share at that index."""
        drift = self.config.drift
        if drift.drift_kind not in SPECTRUM_DRIFT_KINDS:
            return absorbance
        w = drift.provoked_weight(index) * drift.size
        if not w:
            return absorbance
        if drift.drift_kind == "noise":
            return np.asarray(absorbance + self.rng.normal(0.0, w, absorbance.shape), dtype=np.float64)
        assert self.product is not None
        other = self.product[index % self.product.shape[0]]
        return np.asarray((1.0 - w) * absorbance + w * other, dtype=np.float64)

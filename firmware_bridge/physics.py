"""Detector model of the simulator: absorbance in, raw detector counts out (lamp x response, dark, noise, 16-bit ADC).

The model is the textbook one for a grating spectrometer with a halogen lamp and a linear array detector:

* the white (100 %) signal rate of pixel ``i`` is ``lamp(lambda_i) * response(lambda_i)``: a Planck black body at
  the lamp's colour temperature times a smooth bell-shaped detector response over the axis, scaled so that the
  brightest pixel collects ``white_peak_counts_per_ms``;
* a sample of absorbance ``A`` transmits ``10**-A`` of it (Beer-Lambert);
* the dark level is an ADC bias plus a dark current proportional to the integration time, doubling every
  ``dark_doubling_c`` degrees, with a fixed per-pixel non-uniformity;
* shot noise (Poisson statistics of the photo-electrons, Gaussian approximation) and read noise are added per scan,
  ``averages`` scans are averaged, and the result is rounded and clipped by a 16-bit ADC whose full scale marks
  saturated pixels.

Strongly absorbing samples (the IDRC 2002 tablets reach log(1/T) ~ 6) cannot be measured with a white reference
taken at the same exposure without the reference saturating, so :meth:`DetectorModel.reference` does what such
instruments do: it reads the white at a shorter exposure that fills the ADC to ``fill_fraction``, dark-corrects it,
scales it to the sample's integration time and adds the sample exposure's dark level back.  The result is returned
as float32 (it may exceed the ADC range); with it the usual ``A = -log10((S - D) / (R - D))`` gives the absorbance
back directly.  Everything is numpy and seeded through the caller's ``numpy.random.Generator``.

>>> import numpy as np
>>> model = DetectorModel(np.linspace(900.0, 1700.0, 64))
>>> rng = np.random.default_rng(0)
>>> t_us = model.auto_integration_time_us(0.0)
>>> s = model.measure(np.full(64, 0.5), t_us, rng)
>>> s.counts.dtype.name, int(s.counts.max()) <= model.full_scale_counts
('uint16', True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from firmware_bridge.errors import BridgeError

__all__ = [
    "Acquisition",
    "DetectorModel",
    "PhysicsError",
    "absorbance_from_counts",
]

FloatArray = npt.NDArray[np.float64]

_H_C_OVER_K_NM_K = 1.438776877e7  # second radiation constant h*c/k in nm*K
_REFERENCE_HEADROOM = 0.95  # a white whose mean stays below this fraction of full scale is read as is


class PhysicsError(BridgeError, ValueError):
    """Invalid arguments to the detector model (wrong shape, negative time, ...)."""


@dataclass(frozen=True)
class Acquisition:
    """One read-out of the detector.

    Parameters
    ----------
    counts : ndarray, shape (n_pixels,), dtype uint16 (float32 for a scaled reference)
        ADC values.
    integration_time_us : int
        Exposure of the read-out, microseconds.
    averages : int
        Number of scans averaged.
    saturated_count : int
        Number of pixels at the ADC's full scale (in any of the averaged scans).
    """

    counts: npt.NDArray[Any]
    integration_time_us: int
    averages: int
    saturated_count: int

    @property
    def saturated(self) -> bool:
        """True when at least one pixel reached full scale."""
        return self.saturated_count > 0


@dataclass(frozen=True)
class DetectorModel:
    """Lamp, detector and ADC of a virtual spectrometer on a fixed wavelength axis.

    Parameters
    ----------
    wavelengths_nm : ndarray, shape (n_pixels,)
        Wavelength of each pixel, nm (any monotonic axis works, descending too, as a cm-1 axis is in nm; only the
        shapes of lamp and response use it).
    full_scale_counts : int
        ADC full scale, counts (65535 for a 16-bit ADC).
    bias_counts : float
        ADC offset, counts.
    dark_rate_counts_per_ms : float
        Mean dark current at ``reference_temp_c``, counts per millisecond of exposure.
    dark_doubling_c : float
        Temperature rise that doubles the dark current, degrees Celsius.
    reference_temp_c : float
        Temperature at which ``dark_rate_counts_per_ms`` holds, degrees Celsius.
    read_noise_counts : float
        Standard deviation of the read noise per scan, counts.
    electrons_per_count : float
        Conversion gain, electrons per count (sets the shot noise: sigma = sqrt(signal / gain) counts).
    white_peak_counts_per_ms : float
        White signal rate of the brightest pixel with a new lamp, counts per millisecond.
    lamp_temperature_k : float
        Colour temperature of the halogen lamp, kelvin.
    fill_fraction : float
        Fraction of the ADC range the brightest expected signal should fill when choosing exposures.
    fixed_pattern_seed : int
        Seed of the per-pixel dark non-uniformity (a property of the detector, not of a run).
    """

    wavelengths_nm: FloatArray
    full_scale_counts: int = 65535
    bias_counts: float = 800.0
    dark_rate_counts_per_ms: float = 0.5
    dark_doubling_c: float = 7.0
    reference_temp_c: float = 25.0
    read_noise_counts: float = 4.0
    electrons_per_count: float = 20.0
    white_peak_counts_per_ms: float = 60_000.0
    lamp_temperature_k: float = 2850.0
    fill_fraction: float = 0.8
    fixed_pattern_seed: int = 12880
    _white_shape: FloatArray = field(init=False, repr=False, compare=False)
    _dark_pattern: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        wl = np.asarray(self.wavelengths_nm, dtype=np.float64)
        if wl.ndim != 1 or wl.size < 2:
            raise PhysicsError(f"expected a one-dimensional wavelength axis of at least 2 pixels, got shape {wl.shape}")
        if not np.all(np.isfinite(wl)):
            raise PhysicsError("expected finite wavelengths, got NaN or inf")
        if not 0.0 < self.fill_fraction <= 1.0:
            raise PhysicsError(f"expected 0 < fill_fraction <= 1, got {self.fill_fraction}")
        wl = wl.copy()
        wl.flags.writeable = False
        object.__setattr__(self, "wavelengths_nm", wl)
        object.__setattr__(self, "_white_shape", _white_shape(wl, self.lamp_temperature_k))
        fp = np.random.default_rng(self.fixed_pattern_seed).normal(1.0, 0.1, wl.size).clip(0.5, 1.5)
        fp.flags.writeable = False
        object.__setattr__(self, "_dark_pattern", fp)

    # ------------------------------------------------------------------ expected (noise-free) values
    @property
    def n_pixels(self) -> int:
        """Number of pixels of the detector."""
        return int(self.wavelengths_nm.size)

    def white_rate_counts_per_us(self, *, lamp_scale: float = 1.0) -> FloatArray:
        """White (100 %) signal rate of each pixel, counts per microsecond, shape (n_pixels,).

        ``lamp_scale`` multiplies the lamp output (lamp ageing: < 1).
        """
        return self._white_shape * (self.white_peak_counts_per_ms / 1000.0) * float(lamp_scale)

    def dark_mean_counts(self, integration_time_us: float, *, temp_c: float | None = None) -> FloatArray:
        """Mean dark level of each pixel, counts, shape (n_pixels,): bias plus dark current grown over the exposure."""
        t = _check_time(integration_time_us)
        temp = self.reference_temp_c if temp_c is None else float(temp_c)
        rate_per_us = (
            self.dark_rate_counts_per_ms / 1000.0 * 2.0 ** ((temp - self.reference_temp_c) / self.dark_doubling_c)
        )
        return np.asarray(self.bias_counts + rate_per_us * t * self._dark_pattern, dtype=np.float64)

    def expected_counts(
        self,
        absorbance: npt.ArrayLike | None,
        integration_time_us: float,
        *,
        lamp_scale: float = 1.0,
        temp_c: float | None = None,
    ) -> FloatArray:
        """Noise-free detector signal before the ADC, counts, shape (n_pixels,).

        Parameters
        ----------
        absorbance : array_like, shape (n_pixels,), or None
            Decadic absorbance of the sample at each pixel; ``None`` for the open beam (white reference).
        integration_time_us : float
            Exposure, microseconds.
        lamp_scale : float
            Lamp output relative to a new lamp; 0 measures a dark.
        temp_c : float, optional
            Detector temperature, degrees Celsius (dark current).
        """
        t = _check_time(integration_time_us)
        transmittance = 1.0 if absorbance is None else 10.0 ** (-self._check_absorbance(absorbance))
        signal = self.white_rate_counts_per_us(lamp_scale=lamp_scale) * t * transmittance
        return self.dark_mean_counts(t, temp_c=temp_c) + signal

    def auto_integration_time_us(self, min_absorbance: float, *, lamp_scale: float = 1.0) -> int:
        """Exposure, microseconds, at which absorbance ``min_absorbance`` fills ``fill_fraction`` of the ADC.

        The dark level is taken into account; the result is at least 1 microsecond.
        """
        usable = self.fill_fraction * self.full_scale_counts - self.bias_counts
        peak_rate = float(np.max(self.white_rate_counts_per_us(lamp_scale=lamp_scale))) * 10.0 ** (
            -float(min_absorbance)
        )
        dark_rate = float(np.max(self.dark_mean_counts(1.0) - self.bias_counts))
        return max(1, int(usable / (peak_rate + dark_rate)))

    def integration_time_for(self, absorbance: npt.ArrayLike) -> int:
        """Exposure, microseconds, the simulator chooses for a set of spectra: the 1st percentile of their
        absorbance, less 0.05, fills ``fill_fraction`` of the ADC (a few brighter pixels may saturate)."""
        floor = float(np.nanpercentile(np.asarray(absorbance, dtype=np.float64), 1.0)) - 0.05
        return self.auto_integration_time_us(floor)

    # ------------------------------------------------------------------ noisy read-outs
    def measure(
        self,
        absorbance: npt.ArrayLike | None,
        integration_time_us: int,
        rng: np.random.Generator,
        *,
        averages: int = 1,
        lamp_scale: float = 1.0,
        temp_c: float | None = None,
    ) -> Acquisition:
        """Read the detector once (``averages`` scans averaged): uint16 counts with shot and read noise.

        Parameters
        ----------
        absorbance : array_like, shape (n_pixels,) or (n_spectra, n_pixels), or None
            Sample absorbance (one spectrum, or the rows of a line read together: counts of the same shape, and
            ``saturated_count`` over all of them); ``None`` for the open beam.
        integration_time_us : int
            Exposure of each scan, microseconds.
        rng : numpy.random.Generator
            Source of the noise.
        averages : int
            Number of scans averaged (>= 1); noise falls as 1/sqrt(averages).
        lamp_scale : float
            Lamp output relative to new; 0 for a dark.
        temp_c : float, optional
            Detector temperature, degrees Celsius.
        """
        if averages < 1:
            raise PhysicsError(f"expected averages >= 1, got {averages}")
        mean = self.expected_counts(absorbance, integration_time_us, lamp_scale=lamp_scale, temp_c=temp_c)
        above_bias = np.maximum(mean - self.bias_counts, 0.0)
        sigma = np.sqrt(above_bias / self.electrons_per_count + self.read_noise_counts**2)
        scans = mean + sigma * rng.standard_normal((averages, *mean.shape))
        scans = np.clip(np.rint(scans), 0.0, float(self.full_scale_counts))
        saturated = np.any(scans >= self.full_scale_counts, axis=0)
        counts = np.clip(np.rint(scans.mean(axis=0)), 0, self.full_scale_counts).astype(np.uint16)
        return Acquisition(counts, int(integration_time_us), int(averages), int(np.count_nonzero(saturated)))

    def dark(
        self, integration_time_us: int, rng: np.random.Generator, *, averages: int = 1, temp_c: float | None = None
    ) -> Acquisition:
        """A dark read-out (lamp off / shutter closed) at the given exposure, uint16."""
        return self.measure(None, integration_time_us, rng, averages=averages, lamp_scale=0.0, temp_c=temp_c)

    def reference_is_scaled(self, integration_time_us: float, *, lamp_scale: float = 1.0,
                            temp_c: float | None = None) -> bool:
        """Whether :meth:`reference` at this exposure is a scaled float32 white (the open beam would pass 95 % of
        full scale) rather than a plain uint16 read-out."""
        peak = float(np.max(self.expected_counts(None, integration_time_us, lamp_scale=lamp_scale, temp_c=temp_c)))
        return peak > _REFERENCE_HEADROOM * self.full_scale_counts

    def reference(
        self,
        integration_time_us: int,
        rng: np.random.Generator,
        *,
        averages: int = 1,
        lamp_scale: float = 1.0,
        temp_c: float | None = None,
    ) -> Acquisition:
        """A white reference valid for samples read at ``integration_time_us``.

        When the open beam stays below 95 % of full scale at that exposure this is a plain uint16 read-out.
        Otherwise the white is read at the exposure that fills ``fill_fraction`` of the ADC, dark-corrected with
        the expected dark of that exposure, scaled by the ratio of exposures and offset by the expected dark of
        the sample exposure; the result is float32 and its ``integration_time_us`` is the sample's, so that
        ``(S - D) / (R - D)`` is the transmittance.
        """
        t = int(_check_time(integration_time_us))
        if not self.reference_is_scaled(t, lamp_scale=lamp_scale, temp_c=temp_c):
            return self.measure(None, t, rng, averages=averages, lamp_scale=lamp_scale, temp_c=temp_c)
        t_short = self.auto_integration_time_us(0.0, lamp_scale=lamp_scale)
        short = self.measure(None, t_short, rng, averages=averages, lamp_scale=lamp_scale, temp_c=temp_c)
        net = short.counts.astype(np.float64) - self.dark_mean_counts(t_short, temp_c=temp_c)
        scaled = net * (t / t_short) + self.dark_mean_counts(t, temp_c=temp_c)
        return Acquisition(scaled.astype(np.float32), t, int(averages), short.saturated_count)

    # ------------------------------------------------------------------ helpers
    def _check_absorbance(self, absorbance: npt.ArrayLike) -> FloatArray:
        a = np.asarray(absorbance, dtype=np.float64)
        if a.ndim not in (1, 2) or a.shape[-1] != self.n_pixels:  # one spectrum, or the rows of a line
            raise PhysicsError(
                f"expected absorbance of shape ({self.n_pixels},) or (n_spectra, {self.n_pixels}), got {a.shape}"
            )
        # NaN would poison the ADC model; treat it as opaque (what a detector sees through a blocked path).
        return np.nan_to_num(a, nan=50.0, posinf=50.0, neginf=-5.0).clip(-5.0, 50.0)


def absorbance_from_counts(
    sample: npt.ArrayLike, dark: npt.ArrayLike, reference: npt.ArrayLike, *, min_transmittance: float = 1e-12
) -> FloatArray:
    """Decadic absorbance ``-log10((S - D) / (R - D))``, shape of ``sample`` (the inverse of the model).

    Transmittances below ``min_transmittance`` (including negative ones from noise) are clipped to it.
    """
    s = np.asarray(sample, dtype=np.float64)
    d = np.asarray(dark, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if not s.shape[-1:] == d.shape[-1:] == r.shape[-1:]:
        raise PhysicsError(f"expected sample, dark and reference of one length, got {s.shape}, {d.shape}, {r.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (s - d) / (r - d)
    return np.asarray(-np.log10(np.clip(np.nan_to_num(t, nan=min_transmittance), min_transmittance, None)))


def _check_time(integration_time_us: float) -> float:
    t = float(integration_time_us)
    if not np.isfinite(t) or t <= 0.0:
        raise PhysicsError(f"expected a positive integration time in microseconds, got {integration_time_us}")
    return t


def _white_shape(wl: FloatArray, lamp_temperature_k: float) -> FloatArray:
    """Lamp (Planck black body) x detector response, normalised to a peak of 1, shape (n_pixels,)."""
    lam = np.clip(wl, 100.0, None)
    planck = lam**-5.0 / np.expm1(_H_C_OVER_K_NM_K / (lam * lamp_temperature_k))
    lo, hi = float(wl.min()), float(wl.max())
    x = (wl - lo) / (hi - lo) if hi > lo else np.zeros_like(wl)
    response = 0.25 + 0.75 * np.exp(-0.5 * ((x - 0.45) / 0.3) ** 2)  # bell over the axis, never below 25 %
    shape = planck * response
    return np.asarray(shape / shape.max())

"""Each spectrum's own detector noise, for the OOD statistics of a model fitted with a declared line detector.

A counting detector's noise is not the same for every spectrum: shot noise grows with the light that reaches it, so
in absorbance a thick, dark tablet is several times noisier than a thin one (the IDRC 2002 tablets span a factor of
about 100 in noise variance). An OOD model whose T2 and Q assume the average noise flags the noisy ones, although
their chemistry is in distribution. The device knows each spectrum's noise from the frame itself: a pixel reading
``S`` counts over a dark ``D`` and a white ``W`` has variance ``(S - D) / g + r**2 + 1/12`` counts (shot noise at
``g`` electrons per count, read noise ``r``, the ADC's rounding), divided by the scans averaged, so the processed
signal at that pixel has the variance (first-order propagation)::

    absorbance  -log10((S - D) / (W - D)):  var_S / ((S - D) ln 10)**2
    reflectance (S - D) / (W - D):          var_S / (W - D)**2

:class:`LineNoise` turns these per-pixel variances into the spectrum's noise *level* ``rho``: the variance its
noise adds to the noise-whitened features, ``sum_p pixel_gain_p * var_p``, relative to the average training copy
(``rho = 1``). The gains are the preprocessing's squared sensitivity to each input channel, whitened, and averaged
over the features (``trainer.drift``). :class:`edge.ood.OodModel` then scores T2 and Q under that level.

>>> import numpy as np
>>> n = LineNoise(pixel_gain=np.ones(2), electrons_per_count=1.0, read_noise_counts=0.0,
...               component_noise=np.array([1.0]), signal_variance=np.array([3.0]), q_signal=1.0, q_noise=1.0)
>>> round(float(n.level(np.array([1000.0, 100.0]), np.zeros(2), np.full(2, 1000.0))) * 1e4, 2)
20.76
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import BundleError
from edge.validation import require_keys, require_mapping, require_number

__all__ = ["LineNoise", "QUANTITIES", "signal_variance"]

FloatArray = npt.NDArray[np.float64]

#: Processed signals whose per-pixel noise :meth:`LineNoise.signal_variance_of` knows how to propagate.
QUANTITIES = ("absorbance", "reflectance")

_LN10 = float(np.log(10.0))


def signal_variance(counts: npt.ArrayLike, dark: npt.ArrayLike, reference: npt.ArrayLike, *, averages: int = 1,
                    electrons_per_count: float, read_noise_counts: float, quantity: str = "absorbance") -> FloatArray:
    """Per-pixel variance of the processed signal (``quantity``) of raw frames with their dark and white: shot, read
    and rounding noise of the counts (``averages`` scans averaged), propagated to first order."""
    S = np.asarray(counts, dtype=np.float64)
    D = np.asarray(dark, dtype=np.float64)
    net = np.maximum(S - D, 1.0)  # a pixel at or below its dark: one count of signal (its ratio is floored too)
    var_s = (net / electrons_per_count + read_noise_counts ** 2) / max(int(averages), 1) + 1.0 / 12.0
    if quantity == "reflectance":
        white = np.maximum(np.asarray(reference, dtype=np.float64) - D, 1.0)
        return np.asarray(var_s / white ** 2, dtype=np.float64)
    return np.asarray(var_s / (net * _LN10) ** 2, dtype=np.float64)


@dataclass(frozen=True)
class LineNoise:
    """The line detector's per-spectrum noise level and the OOD model's variances split into signal and noise.

    Parameters
    ----------
    pixel_gain : ndarray, shape (n_channels,)
        Weight of each input channel's signal variance in the spectrum's noise level (all finite and >= 0), scaled
        so that the average training copy has level 1.
    electrons_per_count, read_noise_counts : float
        The detector's gain and read noise (``[instrument.noise]``, else the simulator's).
    component_noise : ndarray, shape (k,)
        Variance the detector's noise adds along each principal axis at level 1 (whitened units, all >= 0).
    signal_variance : ndarray, shape (k,)
        Variance along each axis without the detector's noise (all > 0): T2 divides by
        ``signal_variance + rho * component_noise``.
    q_signal, q_noise : float
        Mean Q of the training spectra without the detector's noise (> 0) and the mean Q the noise adds at level 1
        (>= 0): Q is reported as ``||residual||**2 / (q_signal + rho * q_noise)``.
    quantity : {"absorbance", "reflectance"}
        What the pipeline's counts step computes (whose variance the gains weigh).
    """

    pixel_gain: FloatArray
    electrons_per_count: float
    read_noise_counts: float
    component_noise: FloatArray
    signal_variance: FloatArray
    q_signal: float
    q_noise: float
    quantity: str = "absorbance"

    def __post_init__(self) -> None:
        for name, low, exclusive in (("pixel_gain", 0.0, False), ("component_noise", 0.0, False),
                                     ("signal_variance", 0.0, True)):
            arr = np.array(getattr(self, name), dtype=np.float64).reshape(-1)
            if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr < low) or (exclusive and np.any(arr <= low)):
                raise BundleError(f"ood.noise: expected {name} finite and {'>' if exclusive else '>='} {low:g}, "
                                  f"got {arr.size} values with min {float(np.min(arr)) if arr.size else None!r}")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        if self.component_noise.shape != self.signal_variance.shape:
            raise BundleError(f"ood.noise: expected as many component_noise as signal_variance values, got "
                              f"{self.component_noise.size} and {self.signal_variance.size}")
        require_number(float(self.electrons_per_count), "ood.noise: electrons_per_count", BundleError, minimum=0.0,
                       min_exclusive=True)
        require_number(float(self.read_noise_counts), "ood.noise: read_noise_counts", BundleError, minimum=0.0)
        require_number(float(self.q_signal), "ood.noise: q_signal", BundleError, minimum=0.0, min_exclusive=True)
        require_number(float(self.q_noise), "ood.noise: q_noise", BundleError, minimum=0.0)
        if self.quantity not in QUANTITIES:
            raise BundleError(f"ood.noise: expected quantity one of {', '.join(QUANTITIES)}, got {self.quantity!r}")
        for name in ("electrons_per_count", "read_noise_counts", "q_signal", "q_noise"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def n_channels(self) -> int:
        """Input channels the gains cover (the bundle's contract)."""
        return int(self.pixel_gain.size)

    def signal_variance_of(self, counts: npt.ArrayLike, dark: npt.ArrayLike, reference: npt.ArrayLike,
                           averages: int = 1) -> FloatArray:
        """Per-pixel variance of the processed signal of raw frames (shape (n_channels,) or (n, n_channels))."""
        return signal_variance(counts, dark, reference, averages=averages, electrons_per_count=self.electrons_per_count,
                               read_noise_counts=self.read_noise_counts, quantity=self.quantity)

    def level(self, counts: npt.ArrayLike, dark: npt.ArrayLike, reference: npt.ArrayLike,
              averages: int = 1) -> FloatArray:
        """Noise level ``rho`` of raw frames (counts with their dark and white): shape () for one, (n,) for a batch;
        1 is the average training copy's."""
        var = self.signal_variance_of(counts, dark, reference, averages)
        if var.shape[-1] != self.n_channels:
            raise BundleError(f"ood.noise: expected frames of {self.n_channels} channels, got {var.shape[-1]}")
        return np.asarray(var @ self.pixel_gain, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"pixel_gain": self.pixel_gain.tolist(), "electrons_per_count": self.electrons_per_count,
                "read_noise_counts": self.read_noise_counts, "component_noise": self.component_noise.tolist(),
                "signal_variance": self.signal_variance.tolist(), "q_signal": self.q_signal,
                "q_noise": self.q_noise, "quantity": self.quantity}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LineNoise:
        require_mapping(d, "ood.noise", BundleError)
        keys = ("pixel_gain", "electrons_per_count", "read_noise_counts", "component_noise", "signal_variance",
                "q_signal", "q_noise", "quantity")
        require_keys(d, "ood.noise", BundleError, keys, allow_unknown=True)
        try:
            return cls(pixel_gain=np.asarray(d["pixel_gain"], dtype=np.float64),
                       electrons_per_count=float(d["electrons_per_count"]),
                       read_noise_counts=float(d["read_noise_counts"]),
                       component_noise=np.asarray(d["component_noise"], dtype=np.float64),
                       signal_variance=np.asarray(d["signal_variance"], dtype=np.float64),
                       q_signal=float(d["q_signal"]), q_noise=float(d["q_noise"]), quantity=str(d["quantity"]))
        except (TypeError, ValueError) as exc:
            raise BundleError(f"ood.noise: malformed values ({exc})") from exc

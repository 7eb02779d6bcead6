"""Seeded synthetic spectral datasets: Beer-Lambert mixtures of Gaussian/Lorentzian absorption bands with known y.

Each analyte has a pure absorptivity spectrum made of a few absorption bands (Gaussian or Lorentzian, the two
classic line shapes).  A sample's absorbance is the Beer-Lambert sum of concentration x absorptivity x path length,
on top of a matrix background that every sample shares, an unlabelled interferent, a baseline (offset and slope),
multiplicative scatter and a little measurement noise.  The concentrations of the analytes are the targets ``y``.

The returned dict has the keys of ``../shared/datasets/*.npz`` (``X``, ``wavelengths``, ``y``, ``target_names``)
plus ``pure_absorptivity``, ``split`` and ``axis_unit`` (the unit of ``wavelengths``, which the shared files leave to
their READMEs), so it can be saved with :func:`save_npz` and read back by anything that reads those files (the
simulator among them, which announces the axis in that unit).  Written here rather than borrowed because the point
is control: known ground truth, a chosen difficulty and no download.

>>> d = make_synthetic_dataset(10, seed=1, n_channels=50)
>>> d["X"].shape, d["y"].shape, d["target_names"].tolist()
((10, 50), (10, 3), ['analyte_a_pct', 'analyte_b_pct', 'analyte_c_pct'])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from firmware_bridge.errors import BridgeError

__all__ = [
    "SyntheticDataError",
    "absorption_band",
    "load_npz",
    "make_synthetic_dataset",
    "save_npz",
]

FloatArray = npt.NDArray[np.float64]

#: Concentration ranges of the analytes, percent, in the order of ``target_names``.
DEFAULT_CONCENTRATION_RANGES_PCT: tuple[tuple[float, float], ...] = ((5.0, 25.0), (1.0, 10.0), (0.5, 5.0))


class SyntheticDataError(BridgeError, ValueError):
    """Invalid arguments to the synthetic generator, or a file that is not a spectral dataset."""


def absorption_band(
    wavelengths_nm: npt.ArrayLike, center_nm: float, fwhm_nm: float, height: float = 1.0, *, shape: str = "gaussian"
) -> FloatArray:
    """One absorption band of peak ``height`` at ``center_nm`` with full width at half maximum ``fwhm_nm``.

    Parameters
    ----------
    wavelengths_nm : array_like, shape (n_channels,)
        Axis, nm.
    center_nm, fwhm_nm : float
        Position and full width at half maximum of the band, nm.
    height : float
        Peak absorptivity.
    shape : {"gaussian", "lorentzian"}
        Line shape.

    Returns
    -------
    ndarray, shape (n_channels,), float64
    """
    wl = np.asarray(wavelengths_nm, dtype=np.float64)
    if fwhm_nm <= 0:
        raise SyntheticDataError(f"expected a positive band width, got {fwhm_nm} nm")
    if shape == "gaussian":
        sigma = fwhm_nm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
        return np.asarray(height * np.exp(-0.5 * ((wl - center_nm) / sigma) ** 2))
    if shape == "lorentzian":
        gamma = fwhm_nm / 2.0
        return np.asarray(height * gamma**2 / ((wl - center_nm) ** 2 + gamma**2))
    raise SyntheticDataError(f"expected shape 'gaussian' or 'lorentzian', got {shape!r}")


def _random_component(wl: FloatArray, rng: np.random.Generator, n_bands: int) -> FloatArray:
    """Absorptivity of one component: ``n_bands`` random bands, normalised to a peak of 1."""
    lo, hi = float(wl.min()), float(wl.max())
    span = hi - lo
    out = np.zeros_like(wl)
    for _ in range(n_bands):
        center = rng.uniform(lo + 0.05 * span, hi - 0.05 * span)
        fwhm = rng.uniform(0.03, 0.12) * span
        shape = "gaussian" if rng.random() < 0.6 else "lorentzian"
        out += absorption_band(wl, center, fwhm, rng.uniform(0.3, 1.0), shape=shape)
    return np.asarray(out / out.max(), dtype=np.float64)


def make_synthetic_dataset(
    n_samples: int = 200,
    *,
    seed: int = 0,
    n_channels: int = 256,
    wavelength_range_nm: tuple[float, float] = (900.0, 1700.0),
    concentration_ranges_pct: tuple[tuple[float, float], ...] = DEFAULT_CONCENTRATION_RANGES_PCT,
    path_length_cm: float = 1.0,
    noise_absorbance: float = 5e-4,
    baseline_offset_sd: float = 0.02,
    baseline_slope_sd: float = 0.02,
    scatter_sd: float = 0.03,
    interferent_max: float = 0.1,
    test_fraction: float = 0.25,
    axis_unit: str = "nm",
) -> dict[str, npt.NDArray[Any]]:
    """Make a seeded synthetic absorbance dataset with known analyte concentrations.

    Parameters
    ----------
    n_samples : int
        Number of spectra.
    seed : int
        Seed: the same arguments give the same arrays, bit for bit.
    n_channels : int
        Number of wavelengths.
    wavelength_range_nm : (float, float)
        First and last point of the axis (evenly spaced), in ``axis_unit``: nm by default.
    concentration_ranges_pct : tuple of (float, float)
        Uniform range of each analyte's concentration, percent; one analyte per range.
    path_length_cm : float
        Optical path length, cm (absorptivities are per % per cm, chosen so that absorbance stays below ~1.5).
    noise_absorbance : float
        Standard deviation of the white measurement noise, absorbance units.
    baseline_offset_sd, baseline_slope_sd : float
        Standard deviations of the additive baseline offset and of its slope across the whole axis, absorbance.
    scatter_sd : float
        Standard deviation of the multiplicative scatter factor around 1.
    interferent_max : float
        Peak absorbance of an unlabelled interferent at its highest level (drawn uniformly from 0).
    test_fraction : float
        Fraction of samples labelled ``"test"`` in ``split`` (the rest ``"calibration"``).
    axis_unit : {"nm", "cm-1"}
        Unit of the axis: ``"cm-1"`` makes a wavenumber axis, even in cm-1 as an FTIR instrument samples it (the
        same numbers and spectra: the bands are drawn on the axis, whatever its unit).

    Returns
    -------
    dict
        ``X`` (n_samples, n_channels) float32 absorbance; ``wavelengths`` (n_channels,) float64, in ``axis_unit``;
        ``y`` (n_samples, n_analytes) float32 concentrations, percent; ``target_names`` (n_analytes,) str;
        ``pure_absorptivity`` (n_analytes, n_channels) float64, absorbance per % per cm; ``split`` (n_samples,) str;
        ``axis_unit`` () str, ``"nm"`` or ``"cm-1"``.
    """
    if n_samples < 1:
        raise SyntheticDataError(f"expected at least 1 sample, got {n_samples}")
    if n_channels < 2:
        raise SyntheticDataError(f"expected at least 2 channels, got {n_channels}")
    if not concentration_ranges_pct:
        raise SyntheticDataError("expected at least one analyte concentration range, got none")
    lo_nm, hi_nm = wavelength_range_nm
    if not hi_nm > lo_nm:
        raise SyntheticDataError(f"expected an increasing wavelength range, got {wavelength_range_nm}")
    if not 0.0 <= test_fraction < 1.0:
        raise SyntheticDataError(f"expected 0 <= test_fraction < 1, got {test_fraction}")
    if axis_unit not in ("nm", "cm-1"):
        raise SyntheticDataError(f"expected axis_unit 'nm' or 'cm-1', got {axis_unit!r}")
    if axis_unit == "cm-1" and not lo_nm > 0:
        raise SyntheticDataError(f"expected positive wavenumbers, got a range from {lo_nm} cm-1")

    rng = np.random.default_rng(seed)
    wl = np.linspace(float(lo_nm), float(hi_nm), n_channels)
    n_analytes = len(concentration_ranges_pct)
    ranges = np.asarray(concentration_ranges_pct, dtype=np.float64)

    # Pure spectra: each analyte peaks at ~0.25 absorbance at the top of its range for 1 cm.
    pure = np.stack([_random_component(wl, rng, int(rng.integers(2, 5))) for _ in range(n_analytes)])
    pure *= (0.25 / ranges[:, 1])[:, None]
    matrix = 0.15 + 0.2 * _random_component(wl, rng, 3)  # the carrier every sample shares
    interferent = _random_component(wl, rng, 2)

    conc = rng.uniform(ranges[:, 0], ranges[:, 1], size=(n_samples, n_analytes))
    interferent_level = rng.uniform(0.0, interferent_max, size=(n_samples, 1))
    x_rel = (wl - wl.mean()) / (wl.max() - wl.min())
    offset = rng.normal(0.0, baseline_offset_sd, size=(n_samples, 1))
    slope = rng.normal(0.0, baseline_slope_sd, size=(n_samples, 1))
    scatter = rng.normal(1.0, scatter_sd, size=(n_samples, 1))

    chemistry = path_length_cm * (conc @ pure) + matrix[None, :] + interferent_level * interferent[None, :]
    absorbance = scatter * chemistry + offset + slope * x_rel[None, :]
    absorbance += rng.normal(0.0, noise_absorbance, size=absorbance.shape)

    names = np.array([f"analyte_{chr(ord('a') + k)}_pct" for k in range(n_analytes)])
    split = np.where(rng.random(n_samples) < test_fraction, "test", "calibration")
    return {
        "X": absorbance.astype(np.float32),
        "wavelengths": wl,
        "y": conc.astype(np.float32),
        "target_names": names,
        "pure_absorptivity": pure,
        "split": split,
        "axis_unit": np.array(axis_unit),
    }


def save_npz(dataset: dict[str, npt.NDArray[Any]], path: str | Path) -> Path:
    """Write ``dataset`` as an uncompressed ``.npz`` readable without pickle; returns the path written."""
    path = Path(path)
    arrays = {k: np.asarray(v) for k, v in dataset.items()}
    for key, arr in arrays.items():
        if arr.dtype == object:
            raise SyntheticDataError(f"expected plain arrays, got object dtype for {key!r}")
    with path.open("wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds narrower than savez takes
    return path


def load_npz(path: str | Path) -> dict[str, npt.NDArray[Any]]:
    """Read a spectral dataset ``.npz`` (no pickle) and check the common keys; returns a dict of arrays.

    ``X`` is (n_samples, n_channels), ``wavelengths`` (n_channels,), ``y`` (n_samples,) or (n_samples, n_targets).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head != b"PK\x03\x04":  # not a zip: np.load would take it for a pickle and say so
            raise ValueError(f"it is not an .npz (a zip of numpy arrays) but starts with {head!r}; a CSV or "
                             "JCAMP-DX dataset is read by the trainer's loaders (a config's [data])")
        with np.load(Path(path), allow_pickle=False) as npz:
            data = {k: np.asarray(npz[k]) for k in npz.files}
    except (OSError, ValueError) as exc:
        raise SyntheticDataError(f"expected a spectral dataset .npz at {path}, could not read it: {exc}") from exc
    for key in ("X", "wavelengths", "y"):
        if key not in data:
            raise SyntheticDataError(f"expected key {key!r} in {path}, found {sorted(data)}")
    x, wl, y = data["X"], data["wavelengths"], data["y"]
    if x.ndim != 2:
        raise SyntheticDataError(f"expected X of two dimensions in {path}, got shape {x.shape}")
    if wl.shape != (x.shape[1],):
        raise SyntheticDataError(f"expected {x.shape[1]} wavelengths in {path}, got {wl.shape[0] if wl.ndim else 0}")
    if y.shape[:1] != (x.shape[0],):
        raise SyntheticDataError(f"expected {x.shape[0]} rows of y in {path}, got shape {y.shape}")
    if "target_names" not in data:
        n_t = 1 if y.ndim == 1 else y.shape[1]
        data["target_names"] = np.array([f"target_{k}" for k in range(n_t)])
    return data

"""Out-of-distribution statistics on the device: Hotelling T2 and Q (squared prediction error) of a frozen PCA model.

The model is fitted by ``trainer.drift.fit_ood`` on preprocessed training spectra and travels in the bundle as a
plain dict (:meth:`OodModel.to_dict`). Scoring is a few lines of numpy so the device needs nothing else:

- centred (and, with a ``scale``, noise-whitened) spectrum ``z = (x - mean) / scale`` (``scale`` 1 without one),
- scores ``t = z @ components.T`` (``k`` principal components),
- ``T2 = sum(t**2 / explained_variance)``: distance inside the model plane, in units of the training spread,
- ``Q = ||z - t @ components||**2``: what the model plane cannot explain (a new absorber, a baseline).

The optional per-feature ``scale`` (format 2) comes from a declared line detector (``[instrument.noise]``): each
feature is divided by its expected spread on the line, detector noise included, so features the line instrument
cannot measure (a band where almost no light reaches the detector) no longer dominate Q, while well-measured
features keep their weight (noise-whitened PCA, the idea of maximum-likelihood PCA, Wentzell et al. 1997).

With a ``noise`` (format 3, :class:`edge.ood_noise.LineNoise`) the statistics are those of each spectrum's own
detector noise: a counting detector's noise grows as less light reaches it, so with one average noise the noisy
(dark, thick) in-distribution spectra would be flagged. The device computes the spectrum's noise level ``rho``
from its counts and references (:meth:`edge.ood_noise.LineNoise.level`; 1 is the average training copy) and
``T2 = sum(t**2 / (signal_variance + rho * component_noise))``, ``Q = ||z - t @ components||**2 / (q_signal +
rho * q_noise)`` (Q is then a ratio, about 1 for a typical spectrum). Without a level (an absorbance frame,
offline evaluation) ``rho = 1``.

A spectrum is out of distribution when ``T2 > t2_limit`` or ``Q > q_limit``; the limits are upper quantiles at
the false-alarm rate ``alpha`` of the training distribution.

>>> import numpy as np
>>> m = OodModel(mean=np.zeros(3), components=np.eye(3)[:1], explained_variance=np.array([4.0]),
...              t2_limit=9.0, q_limit=1.0)
>>> t2, q = m.score(np.array([2.0, 1.0, 0.0]))
>>> float(t2), float(q)
(1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.errors import BundleError, InputContractError
from edge.ood_noise import LineNoise
from edge.validation import require_int, require_keys, require_mapping, require_number

__all__ = ["OOD_FORMAT_VERSION", "OodModel", "frame_noise_level"]

#: Version of the dict layout written by :meth:`OodModel.to_dict` for a model with a ``noise`` (key ``noise``, and
#: ``scale``); a model with a ``scale`` only is written as format 2, one without either as format 1, so every
#: reader since the first understands what it can.
OOD_FORMAT_VERSION = 3

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class OodModel:
    """A frozen PCA model with Hotelling T2 and Q limits.

    Parameters
    ----------
    mean : ndarray, shape feature_shape, float64
        Mean preprocessed training spectrum; its shape (``(n_features,)`` or ``(n_features, k)`` for stacked
        inputs) is the shape of one preprocessed spectrum.
    components : ndarray, shape (n_components, prod(feature_shape)), float64
        Orthonormal principal axes (rows).
    explained_variance : ndarray, shape (n_components,), float64
        Variance of the training scores along each axis (all > 0).
    t2_limit : float
        Hotelling T2 upper control limit.
    q_limit : float
        Q residual upper control limit.
    alpha : float
        False-alarm rate the limits were set for (informational).
    scale : ndarray, shape feature_shape, float64, optional
        Per-feature divisor applied after centring, before projecting (all finite and > 0); the components, the
        explained variances and the limits are in these scaled units. None: no scaling (format 1).
    noise : edge.ood_noise.LineNoise, optional
        Scores under each spectrum's own detector noise (format 3; needs a ``scale``). None: one noise for all.
    """

    mean: FloatArray
    components: FloatArray
    explained_variance: FloatArray
    t2_limit: float
    q_limit: float
    alpha: float = 0.01
    scale: FloatArray | None = None
    noise: LineNoise | None = None

    def __post_init__(self) -> None:
        mean = np.array(self.mean, dtype=np.float64)
        comp = np.array(self.components, dtype=np.float64)
        ev = np.array(self.explained_variance, dtype=np.float64).reshape(-1)
        n_feat = int(mean.size)
        if comp.ndim != 2 or comp.shape[1] != n_feat:
            raise BundleError(f"ood: expected components of shape (k, {n_feat}), got {comp.shape}")
        if comp.shape[0] < 1:
            raise BundleError("ood: expected at least one principal component, got 0")
        if ev.shape != (comp.shape[0],):
            raise BundleError(f"ood: expected {comp.shape[0]} explained variances, got {ev.shape[0]}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(comp)) and np.all(np.isfinite(ev))):
            raise BundleError("ood: mean, components and explained_variance must be finite")
        if np.any(ev <= 0):
            raise BundleError("ood: explained variances must all be > 0")
        for name in ("t2_limit", "q_limit"):
            require_number(float(getattr(self, name)), f"ood: {name}", BundleError, minimum=0.0, min_exclusive=True)
        for name, arr in (("mean", mean), ("components", comp), ("explained_variance", ev)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        if self.scale is not None:
            scale = np.array(self.scale, dtype=np.float64)
            if scale.size != n_feat or scale.shape not in (mean.shape, (n_feat,)):
                raise BundleError(f"ood: expected a scale of shape {mean.shape}, got {scale.shape}")
            if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
                flat = scale.ravel()
                bad = int(np.flatnonzero(~(np.isfinite(flat) & (flat > 0)))[0])
                raise BundleError(f"ood: expected every scale value finite and > 0, got {float(flat[bad])!r} at "
                                  f"feature {bad}")
            scale = scale.reshape(mean.shape)
            scale.setflags(write=False)
            object.__setattr__(self, "scale", scale)
        if self.noise is not None:
            if self.scale is None:
                raise BundleError("ood: expected a scale with a noise model (format 3), got none")
            if self.noise.signal_variance.size != comp.shape[0]:
                raise BundleError(f"ood.noise: expected {comp.shape[0]} signal variances (one per component), got "
                                  f"{self.noise.signal_variance.size}")
        object.__setattr__(self, "t2_limit", float(self.t2_limit))
        object.__setattr__(self, "q_limit", float(self.q_limit))
        object.__setattr__(self, "alpha", float(self.alpha))

    @property
    def n_components(self) -> int:
        """Number of principal components."""
        return int(self.components.shape[0])

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one preprocessed spectrum."""
        return tuple(int(s) for s in self.mean.shape)

    def score(self, X_pre: npt.ArrayLike,
              noise_level: npt.ArrayLike | None = None) -> tuple[FloatArray, FloatArray]:
        """Hotelling T2 and Q of preprocessed spectra.

        Parameters
        ----------
        X_pre : array_like, shape feature_shape or (n, *feature_shape)
            One preprocessed spectrum or a batch.
        noise_level : float or array_like, shape (n,), optional
            Each spectrum's detector noise level ``rho`` (:meth:`edge.ood_noise.LineNoise.level`) for a model with
            a ``noise``; None: 1, the average training copy's. Ignored without a ``noise``.

        Returns
        -------
        t2, q : ndarray, shape () for one spectrum or (n,) for a batch, float64
        """
        X = np.asarray(X_pre, dtype=np.float64)
        fs = self.feature_shape
        single = X.shape == fs
        if not single and X.shape[1:] != fs:
            raise InputContractError(f"ood: expected preprocessed spectra of shape {fs} or (n, *{fs}), got {X.shape}")
        Xc = X.reshape(1 if single else X.shape[0], -1) - self.mean.reshape(1, -1)
        if self.scale is not None:
            Xc = Xc / self.scale.reshape(1, -1)
        T = Xc @ self.components.T
        resid = Xc - T @ self.components
        q = np.sum(resid * resid, axis=1)
        if self.noise is None:
            t2 = np.sum(T * T / self.explained_variance, axis=1)
        else:
            rho = np.ones(T.shape[0]) if noise_level is None else np.broadcast_to(
                np.maximum(np.asarray(noise_level, dtype=np.float64).reshape(-1), 0.0), (T.shape[0],))
            n = self.noise
            t2 = np.sum(T * T / (n.signal_variance + rho[:, None] * n.component_noise), axis=1)
            q = q / (n.q_signal + rho * n.q_noise)
        if single:
            return t2.reshape(()), q.reshape(())
        return t2, q

    def score_rows(self, X_pre: npt.ArrayLike,
                   noise_levels: Sequence[float | None]) -> tuple[list[float], list[float]]:
        """:meth:`score` of each row of a batch alone, bit for bit, as Python floats (``noise_levels``: each row's).

        Each row's projections are its own vector-matrix products, stacked (one ``(1, n) @ (n, k)`` product per
        row, as :meth:`score` of one spectrum computes), never one matrix product of the batch, whose summation
        order may differ; the rest is element by element or a sum along each row, as there.
        """
        X = np.asarray(X_pre, dtype=np.float64)
        fs = self.feature_shape
        if X.shape[1:] != fs or X.shape[0] != len(noise_levels):
            raise InputContractError(f"ood: expected {len(noise_levels)} preprocessed spectra of shape {fs}, got "
                                     f"{X.shape}")
        Xc = X.reshape(X.shape[0], 1, -1) - self.mean.reshape(1, 1, -1)
        if self.scale is not None:
            Xc = Xc / self.scale.reshape(1, 1, -1)
        T = Xc @ self.components.T  # (m, 1, k): m vector-matrix products
        resid = Xc - T @ self.components
        q = np.sum(resid * resid, axis=2)
        if self.noise is None:
            t2 = np.sum(T * T / self.explained_variance, axis=2)
        else:
            rho = np.maximum(np.array([1.0 if v is None else v for v in noise_levels], dtype=np.float64), 0.0)
            n = self.noise
            t2 = np.sum(T * T / (n.signal_variance + rho[:, None, None] * n.component_noise), axis=2)
            q = q / (n.q_signal + rho[:, None] * n.q_noise)
        return t2.reshape(-1).tolist(), q.reshape(-1).tolist()

    def is_outlier(self, X_pre: npt.ArrayLike, noise_level: npt.ArrayLike | None = None) -> npt.NDArray[np.bool_]:
        """True where T2 or Q exceeds its limit; shape () or (n,) (``noise_level`` as in :meth:`score`)."""
        t2, q = self.score(X_pre, noise_level)
        return np.asarray((t2 > self.t2_limit) | (q > self.q_limit))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists of floats); :meth:`from_dict` inverts it exactly. Format 1 without a ``scale``,
        2 (key ``scale``) with one, :data:`OOD_FORMAT_VERSION` (3, keys ``scale`` and ``noise``) with a noise."""
        d: dict[str, Any] = {
            "format_version": 1 if self.scale is None else 2 if self.noise is None else OOD_FORMAT_VERSION,
            "kind": "pca_t2_q",
            "feature_shape": list(self.feature_shape),
            "mean": self.mean.reshape(-1).tolist(),
            "components": self.components.tolist(),
            "explained_variance": self.explained_variance.tolist(),
            "t2_limit": self.t2_limit,
            "q_limit": self.q_limit,
            "alpha": self.alpha,
        }
        if self.scale is not None:
            d["scale"] = self.scale.reshape(-1).tolist()
        if self.noise is not None:
            d["noise"] = self.noise.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> OodModel:
        """Rebuild from :meth:`to_dict` output; :class:`~edge.errors.BundleError` naming what is wrong."""
        require_mapping(d, "ood", BundleError)
        version = require_int(d.get("format_version"), "ood: format_version", BundleError, minimum=1,
                              maximum=OOD_FORMAT_VERSION)
        require_keys(d, "ood", BundleError, ("feature_shape", "mean", "components", "explained_variance", "t2_limit",
                                             "q_limit"), allow_unknown=True)
        try:
            shape = tuple(int(s) for s in d["feature_shape"])
            mean = np.asarray(d["mean"], dtype=np.float64)
            if mean.size != int(np.prod(shape)):
                raise BundleError(f"ood: expected {int(np.prod(shape))} mean values for shape {shape}, got {mean.size}")
            scale = None
            if version >= 2:
                require_keys(d, "ood", BundleError, ("scale",), allow_unknown=True)
                scale = np.asarray(d["scale"], dtype=np.float64)
                if scale.shape != (mean.size,):
                    raise BundleError(f"ood: expected {mean.size} scale values, got shape {scale.shape}")
                scale = scale.reshape(shape)
            elif "scale" in d:
                raise BundleError("ood: expected no scale in format 1 (a scaled model is format 2), got one")
            noise = None
            if version >= 3:
                require_keys(d, "ood", BundleError, ("noise",), allow_unknown=True)
                noise = LineNoise.from_dict(d["noise"])
            elif "noise" in d:
                raise BundleError(f"ood: expected no noise in format {version} (a noise model is format 3), got one")
            return cls(
                mean=mean.reshape(shape),
                components=np.asarray(d["components"], dtype=np.float64),
                explained_variance=np.asarray(d["explained_variance"], dtype=np.float64),
                t2_limit=float(d["t2_limit"]),
                q_limit=float(d["q_limit"]),
                alpha=float(d.get("alpha", 0.01)),
                scale=scale,
                noise=noise,
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, BundleError):
                raise
            raise BundleError(f"ood: malformed arrays ({exc})") from exc


def frame_noise_level(ood: OodModel | None, spectrum: Any, context: Mapping[str, Any]) -> float | None:
    """A frame's detector noise level for ``ood`` (:meth:`edge.ood_noise.LineNoise.level`, from the frame's counts,
    scans averaged and its ``context`` dark and white); None (the model's average level, 1) for a model without a
    ``noise``, without references, or for a frame whose pixels are not the ones the gains cover (a resampled axis)."""
    noise = None if ood is None else ood.noise
    dark, white = context.get("dark"), context.get("reference")
    if noise is None or dark is None or white is None or len(spectrum.counts) != noise.n_channels:
        return None
    return float(noise.level(spectrum.counts, dark, white, averages=int(getattr(spectrum, "averages", 1))))

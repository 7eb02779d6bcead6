"""Autoencoder reconstruction as a third out-of-distribution statistic, beside Hotelling T2 and Q.

The bundle may carry a small int8 autoencoder (member ``autoencoder.tflite``, fitted by ``trainer.autoencoder``)
whose input and output are the model's preprocessed input vector, flattened. The device runs it with the same
:class:`~edge.runtime.ModelRuntime` as the model (quantise, invoke, dequantise; a batch in one invoke when the
runtime allows it) and scores each spectrum in float:

- ``score = mean((x - x_hat) ** 2)``: the mean squared reconstruction error over the features, in the squared unit
  of the preprocessed features;

against the manifest's ``autoencoder.limit``, an upper quantile of the scores of held-out training spectra at the
false-alarm rate ``autoencoder.alpha``. Where PCA's Q sees only what a linear plane cannot explain, the
autoencoder's bottleneck is non-linear; both look at the same preprocessed vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from edge.errors import BundleError
from edge.runtime import ModelRuntime
from edge.validation import require_int, require_keys, require_mapping, require_number

__all__ = ["AUTOENCODER_KEYS", "AutoencoderModel", "autoencoder_from_manifest"]

#: Keys of the manifest's ``autoencoder`` section.
AUTOENCODER_KEYS: Final[tuple[str, ...]] = ("limit", "alpha", "held_out_rows", "score")
#: The one score this format defines.
SCORE_MSE: Final[str] = "mean_squared_error"


@dataclass(frozen=True)
class AutoencoderModel:
    """An int8 autoencoder on the preprocessed features and its reconstruction-error limit.

    Parameters
    ----------
    runtime : ModelRuntime
        The autoencoder; input and output of shape ``(n_features,)``.
    limit : float
        Upper limit of :meth:`score` (> 0).
    alpha : float
        False-alarm rate the limit was set for on held-out training spectra.
    held_out_rows : int
        How many held-out spectra the limit is a quantile of.
    """

    runtime: ModelRuntime
    limit: float
    alpha: float
    held_out_rows: int

    @cached_property
    def n_features(self) -> int:
        """Length of the (flattened) preprocessed vector the autoencoder takes (computed once: it is on the
        per-frame path)."""
        return int(np.prod(self.runtime.input_shape))

    def reconstruct(self, x_pre: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Dequantised reconstruction of one preprocessed spectrum (any shape of ``n_features`` values), shape
        ``(n_features,)``, or of a batch ``(n, ...)``, shape ``(n, n_features)``."""
        x = np.asarray(x_pre, dtype=np.float64)
        if x.size == self.n_features:
            return self.runtime.predict(x.reshape(self.n_features)).reshape(self.n_features)
        return self.runtime.predict(x.reshape(x.shape[0], self.n_features)).reshape(x.shape[0], self.n_features)

    def score(self, x_pre: npt.ArrayLike) -> Any:
        """Mean squared reconstruction error: a float for one spectrum, shape (n,) float64 for a batch.

        Raises
        ------
        InputContractError
            The features are not finite, or not ``n_features`` values per spectrum.
        """
        x = np.asarray(x_pre, dtype=np.float64)
        n = self.n_features
        if x.size == n:  # one spectrum: the per-frame path, kept to a few numpy calls
            flat = x.reshape(n)
            d = flat - self.runtime.predict(flat)
            return float(d @ d) / n
        rows = x.reshape(x.shape[0], n)
        d = rows - self.runtime.predict(rows).reshape(x.shape[0], n)
        # row by row, the same dot product as one spectrum: a batch scores each spectrum bit for bit as alone
        return np.array([float(r @ r) / n for r in d], dtype=np.float64)

    def check_golden(self, preprocessed: npt.ArrayLike, expected: npt.ArrayLike, lsb: float) -> float:
        """The golden self-test of the autoencoder: each preprocessed golden vector reconstructed within ``lsb``
        int8 output steps of the trainer's reconstruction (``expected``, shape (n, n_features)).

        Returns
        -------
        float
            The largest difference, in output steps.

        Raises
        ------
        BundleError
            ``golden vector i: autoencoder output j is ..., expected ...``.
        """
        pre = np.asarray(preprocessed, dtype=np.float64)
        want = np.asarray(expected, dtype=np.float64)
        n = pre.shape[0]
        if want.shape != (n, self.n_features):
            raise BundleError(f"golden: expected autoencoder outputs of shape ({n}, {self.n_features}), "
                              f"got {want.shape}")
        step = self.runtime.output_step
        unit = float(np.max(step)) if step is not None and np.all(step > 0) else 0.0
        worst = 0.0
        for i in range(n):  # the single-spectrum path, as the daemon scores one frame
            try:
                got = self.reconstruct(pre[i]).astype(np.float64)
            except Exception as exc:  # see edge.bundle.loader._TRUST_BOUNDARY
                raise BundleError(f"golden vector {i}: autoencoder failed: {exc}") from exc
            diff = np.abs(got - want[i])
            bound = lsb * unit * (1 + 1e-6) if unit > 0 else 1e-5 + 1e-4 * np.abs(want[i])
            bad = np.flatnonzero(~(diff <= bound))
            if bad.size:
                j = int(bad[0])
                raise BundleError(f"golden vector {i}: autoencoder output {j} is {got[j]:.6g}, expected "
                                  f"{want[i, j]:.6g} (differs by {diff[j]:.4g})")
            worst = max(worst, float(diff.max(initial=0.0)) / unit if unit > 0 else 0.0)
        return worst


def autoencoder_from_manifest(section: Any, runtime: ModelRuntime, n_features: int | None) -> AutoencoderModel:
    """Check the manifest's ``autoencoder`` section against the loaded autoencoder and build the model.

    Parameters
    ----------
    section : Any
        ``manifest["autoencoder"]``.
    runtime : ModelRuntime
        The loaded ``autoencoder.tflite``.
    n_features : int or None
        Values in one preprocessed spectrum (the pipeline's output), when known.

    Raises
    ------
    BundleError
        A missing, unknown or out-of-range field, or an autoencoder whose input or output is not the
        preprocessed vector.
    """
    E, w = BundleError, "manifest: autoencoder"
    d = require_mapping(section, w, E)
    require_keys(d, w, E, AUTOENCODER_KEYS)
    limit = require_number(d["limit"], f"{w}.limit", E, minimum=0.0, min_exclusive=True)
    alpha = require_number(d["alpha"], f"{w}.alpha", E, minimum=0.0, min_exclusive=True, maximum=1.0)
    rows = require_int(d["held_out_rows"], f"{w}.held_out_rows", E, minimum=1)
    if d["score"] != SCORE_MSE:
        raise BundleError(f"{w}.score: expected {SCORE_MSE!r}, got {d['score']!r}")
    size_in, size_out = int(np.prod(runtime.input_shape)), int(np.prod(runtime.output_shape))
    if size_in != size_out:
        raise BundleError(f"member autoencoder.tflite: expected as many outputs as inputs, got {size_in} inputs "
                          f"and {size_out} outputs")
    if n_features is not None and size_in != n_features:
        raise BundleError(f"member autoencoder.tflite: expected {n_features} inputs (the pipeline's output), "
                          f"got {size_in}")
    return AutoencoderModel(runtime=runtime, limit=limit, alpha=alpha, held_out_rows=rows)

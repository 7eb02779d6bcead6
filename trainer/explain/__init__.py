"""Interpretability of the trained models: integrated gradients and occlusion for the CNN, coefficients and VIP for PLS.

Every function returns plain arrays; the ``plot_*`` functions draw them over the mean spectrum (wavelength axis in
the data's units) with matplotlib's object API (no ``pyplot`` state, Agg canvas) and save PNGs, so the report can
embed them. The aim is the chemist's check: do the regions the model relies on sit on known absorption bands, or
on an acquisition artifact (a detector joint, a lamp line) that merely correlated with the target in training?

- :func:`integrated_gradients` (Sundararajan et al. 2017) with ``tf.GradientTape``: attribution of each input
  feature relative to a baseline (the mean training spectrum by default, or zeros), midpoint Riemann sum over
  ``steps`` points of the straight path.
- :func:`occlusion`: the mean absolute change of the prediction when a sliding window of features is replaced by
  the baseline; model-agnostic (any ``predict`` callable, so it also explains PLS or a ``.tflite`` bundle).
- :func:`pls_coefficients` and :func:`vip_scores` for a fitted scikit-learn ``PLSRegression``.
- :func:`first_layer_kernels`: the first ``Conv1D`` kernels (Bjerrum et al. 2017 observed that they resemble
  derivative and smoothing filters), drawn by :func:`plot_kernels`.

Hand-written because the maths is short and no maintained library covers Keras 3 *and* PLS VIP with plots over a
spectrum (captum is PyTorch-only; alibi pins older TensorFlow).

Layout: :mod:`~trainer.explain.attributions` (the arrays), :mod:`~trainer.explain.plots` (the PNGs) and
:mod:`~trainer.explain.run` (a fit explained for its report, and the report's HTML section).
"""

from __future__ import annotations

from trainer.explain.attributions import (
    DEFAULT_IG_STEPS,
    DEFAULT_OCCLUSION_WINDOW,
    ExplainError,
    first_layer_kernels,
    importance_profile,
    integrated_gradients,
    occlusion,
    pls_coefficients,
    vip_scores,
)
from trainer.explain.plots import plot_importance, plot_kernels
from trainer.explain.run import explain_cnn, explain_pls, explain_run, html_section

__all__ = [
    "DEFAULT_IG_STEPS",
    "DEFAULT_OCCLUSION_WINDOW",
    "ExplainError",
    "explain_cnn",
    "explain_pls",
    "explain_run",
    "first_layer_kernels",
    "html_section",
    "importance_profile",
    "integrated_gradients",
    "occlusion",
    "plot_importance",
    "plot_kernels",
    "pls_coefficients",
    "vip_scores",
]

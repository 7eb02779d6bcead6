"""The ``spectro-train fit`` orchestration: data -> splits -> PLS baseline -> CNN recipe search (with ``[search]``,
:mod:`trainer.search`) -> CNN cross-validation -> trunk pretraining (``[pretrain]``) -> CNN -> pruning ->
int8 -> champion (CNN or PLS) -> OOD and intervals -> bundle -> evaluation through the edge runtime ->
``metrics.json`` and the HTML report.

Only the training rows fit anything (preprocessing, PLS, CNN weights, OOD model) and score the candidates by grouped
cross-validation (:mod:`trainer.champion`); the selection rows pick the CNN's kept epoch and measure its int8 cost;
the conformal intervals come from the held-out residuals of every calibration row (the selection rows, and the
training rows out of fold: a deployed PLS tuned again in every fold, a CNN's recipe cross-validated); the test
rows are only predicted. The bundle
carries the winner, behind the steps that turn what the instrument sends (``[instrument] signal``: counts by
default) into the model's input: counts -> absorbance with the device's dark and white references, then
resampling of the device's axis onto the training grid. The ``deployed`` figures come from loading the written
bundle with :func:`edge.bundle.load_bundle` and feeding it what a device would send
(:meth:`edge.bundle.Bundle.frames_from_signal`), i.e. the edge's own preprocessing and LiteRT runtime.

The stages are functions with narrow inputs and outputs (frozen dataclasses), run in order by
:func:`~trainer.pipeline.fit.fit_full`: :mod:`~trainer.pipeline.prepare` (load, split, check),
:mod:`~trainer.pipeline.recipe` (model configs and the ``[search]``), :mod:`~trainer.pipeline.cnn` (cross-validate,
train, prune), :mod:`~trainer.pipeline.int8` (conversion and the candidates' predictions),
:mod:`~trainer.pipeline.choose` (the deployed model), :mod:`~trainer.pipeline.calibrate` (OOD and intervals),
:mod:`~trainer.pipeline.write` (the bundle), :mod:`~trainer.pipeline.evaluate` (through the edge runtime),
:mod:`~trainer.pipeline.summary` (``metrics.json``) and :mod:`~trainer.pipeline.run_report` (the HTML report);
:mod:`~trainer.pipeline.progress` numbers the stages and :mod:`~trainer.pipeline.scores` holds the figures.

``metrics.json`` (read by benchmarks and other tools):

- ``evaluations``: one row per (split, target, model) with ``split`` (``train``, ``select`` and every named test
  set), ``target``, ``model`` (``pls``, ``cnn_float``, ``cnn_int8``, ``deployed``), ``n`` and ``rmsep``, ``bias``
  (mean of prediction - reference), ``sep``, ``r2`` for regression or ``accuracy`` for classification;
- ``deployed_model`` (``cnn``, ``pls`` or ``per_target``: each target served by its winner, a two-model bundle),
  ``deployed_per_target`` (target -> ``cnn``, ``pls`` or ``blend``), ``deployed_members`` (the models the bundle
  carries, primary first) and ``selection`` (``winner``, ``mode``, ``rule``, ``reason``, ``per_target``,
  ``per_target_reason``, ``blend_weights`` (PLS's weight per blended target), ``cv_rmse`` per candidate and target,
  ``int8_cost``, ``ratio_cnn_to_pls``, ``folds``);
  ``deployed_pls`` (candidate and latent variables) when PLS serves any target;
- ``comparison``: per test split and target, the four models' figure and the ratios int8/PLS, int8/float and
  deployed/PLS;
- ``pls_components`` (target -> latent variables), ``preprocessing`` (``cnn`` candidate, ``pls`` candidate per
  target, all ``candidates``), ``sparsity`` (share of zero kernel weights of the CNN), ``pruning``,
  ``model_bytes`` (the deployed ``.tflite``), ``cnn_model_bytes`` (the int8 CNN), ``cnn_int8_output_step``
  (target -> one int8 output step of the CNN in target units; its outputs are standardised targets, turned into
  units in float by the bundle's ``output_transform``), ``cnn_int8_calibration`` (each conversion's RMS difference
  from the float network on the training and selection rows, a classifier's also the rows whose class it changes,
  and the one kept; :mod:`trainer.pipeline.int8`), ``bundle_bytes``,
  ``train_seconds`` (wall time of the whole fit), ``timings_s`` per stage, ``interval_coverage`` (nominal,
  ``calibration_rows`` and where they come from, ``out_of_fold`` (``nested``, ``fixed_recipe``,
  ``per_target (...)`` or ``none``), half-widths, measured coverage of the deployed model per test
  split and target, and ``residual_shift``: each test split's errors against the calibration residuals),
  ``ood`` (components, limits, alarm rates per split; ``ood.autoencoder``: the autoencoder's limit, rows and
  alarm rates, or null),
  ``splits`` (rows per role);
- ``pretrain``: the CNN trunk pretraining on unlabeled spectra (:mod:`trainer.pretrain`): ``{"ran": false,
  "reason"}``, or its source, rows, task, epochs, settings and reconstruction losses;
- ``search``: the CNN recipe search (:meth:`trainer.search.SearchResult.to_dict`), or ``{"ran": false, "reason"}``.
  When it ran, the CNN figures come from its best recipe, and the champion's CNN cross-validation is its best trial's.
"""

from __future__ import annotations

from trainer.pipeline.evaluate import MODELS
from trainer.pipeline.fit import FitResult, fit, fit_full
from trainer.pipeline.scores import classification_metrics, regression_metrics
from trainer.pipeline.write import N_GOLDEN

__all__ = ["fit", "fit_full", "FitResult", "regression_metrics", "classification_metrics", "MODELS", "N_GOLDEN"]

"""Calibration transfer between instruments: DS and PDS fitted from paired spectra, as the edge's ``linear`` step.

A model calibrated on a *master* instrument (instrument 1) is carried to a *slave* (instrument 2) by mapping slave
spectra into the master's domain, ``X_master ~ X_slave @ F + b``, with ``F`` and ``b`` fitted from a few transfer
samples measured on both. The map is an :class:`edge.preprocess.LinearTransfer` step inserted where the pipeline's
data are absorbance on the model grid (``pipeline.transfer_index``: after the ``counts`` and ``resample`` steps,
before everything the trainer fitted), so the device applies it with no code change and the model, its
preprocessing, OOD statistics and intervals stay untouched.

Methods
-------
``ds``  Direct standardisation: one full ``(p, p)`` map. With far fewer transfer samples than channels the
        least-squares problem is underdetermined; the classic minimum-norm solution ``pinv(Xs) Xm`` projects every
        new spectrum onto the span of the transfer spectra and throws the rest away. Here the map is regularised
        *towards the identity* (``F = I + D``, ``D`` the ridge / minimum-norm solution of
        ``Xm - Xs = Xs D``), so what the transfer samples do not describe passes through unchanged.
``pds`` Piecewise direct standardisation (Wang, Veltkamp and Kowalski 1991): each master channel is regressed on a
        window of slave channels around it (truncated-SVD pseudo-inverse, also towards the identity), giving a
        banded ``F``; the additive offset ``b`` carries the mean difference. The window width is chosen by
        leave-one-out cross-validation over the transfer samples (mean squared error of the reconstructed master
        spectra, optionally after a caller-supplied preprocessing such as SNV + derivative, which is what the
        model sees).

Why hand-written: DS/PDS are a few lines of linear algebra on numpy; no maintained scikit-learn-compatible
package implements PDS with an edge-exportable linear form.

Layout: :mod:`~trainer.transfer.model` (the fitted map), :mod:`~trainer.transfer.ds_pds` (fitting it),
:mod:`~trainer.transfer.samples` (pairing and choosing transfer samples), :mod:`~trainer.transfer.bundle` (the slave
instrument's bundle), :mod:`~trainer.transfer.cli` (``spectro-train transfer``), :mod:`~trainer.transfer.finetune`
and :mod:`~trainer.transfer.evaluate` (the comparison the benchmarks report).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> Xm = rng.normal(size=(12, 40)).cumsum(axis=1)
>>> Xs = 1.05 * Xm + 0.1
>>> t = fit_pds(Xm, Xs, window=5)
>>> bool(np.allclose(t.transform(Xs), Xm, atol=1e-6))
True
"""

from __future__ import annotations

from trainer.transfer.bundle import insert_transfer, transfer_bundle
from trainer.transfer.cli import add_transfer_arguments, run_transfer_command
from trainer.transfer.ds_pds import choose_pds_window, fit_ds, fit_pds, fit_transfer
from trainer.transfer.evaluate import evaluate_transfer, rmsep, transfer_rows_for_run
from trainer.transfer.finetune import finetune_cnn
from trainer.transfer.model import DEFAULT_PDS_WINDOWS, DEFAULT_RCOND, TransferModel
from trainer.transfer.samples import (
    kennard_stone,
    load_transfer_pairs,
    pair_by_sample_id,
    paired_rows,
    select_transfer_samples,
)

__all__ = [
    "DEFAULT_PDS_WINDOWS",
    "DEFAULT_RCOND",
    "TransferModel",
    "add_transfer_arguments",
    "choose_pds_window",
    "evaluate_transfer",
    "finetune_cnn",
    "fit_ds",
    "fit_pds",
    "fit_transfer",
    "insert_transfer",
    "kennard_stone",
    "load_transfer_pairs",
    "pair_by_sample_id",
    "paired_rows",
    "rmsep",
    "run_transfer_command",
    "select_transfer_samples",
    "transfer_bundle",
    "transfer_rows_for_run",
]

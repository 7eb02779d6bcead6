"""The first stages of a fit: load the data, split its rows, and refuse, before anything trains, a split or a signal
the rest cannot use."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.config import TrainConfig
from trainer.data import SpectralDataset, load_configured
from trainer.errors import TrainConfigError
from trainer.splits import SplitPlan, group_labels, make_split_plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """The checked data of a fit.

    Attributes
    ----------
    ds : SpectralDataset
    plan : SplitPlan
        Rows per role (training, selection, named test sets).
    groups : ndarray, shape (n,)
        Cross-validation group of every row (``[cv] group``, else ``[split] group``).
    min_ratio : float
        Ratio floor of the counts conversion for these spectra.
    classify : bool
        Classification task.
    make_pre : callable
        Preprocessing steps (``[preprocessing]`` candidate) -> unfitted trainer pipeline on the data's axis.
    """

    ds: SpectralDataset
    plan: SplitPlan
    groups: np.ndarray
    min_ratio: float
    classify: bool
    make_pre: Callable[[Sequence[Mapping[str, Any]]], Any]

    @property
    def wavelengths_nm(self) -> np.ndarray:
        """The data's axis in nm (a wavenumber axis converted): what the line detector model is indexed by."""
        wl = np.asarray(self.ds.wavelengths, dtype=np.float64)
        return 1e7 / wl if self.ds.axis_unit == "cm-1" else wl


def prepare_data(cfg: TrainConfig, stage: Callable[[str], None]) -> Prepared:
    """Stages "load data" and "split rows"."""
    stage("load data")
    ds = load_configured(cfg.data)
    log.info("data: %s, %d spectra x %d channels, targets %s", ds.source, ds.n_samples, ds.n_channels,
             ", ".join(ds.target_names))

    stage("split rows")
    plan = make_split_plan(ds, cfg.split, seed=cfg.seed)
    return prepared_from(cfg, ds, plan, group_labels(ds, cfg.cv.group or cfg.split.group))


def prepared_from(cfg: TrainConfig, ds: SpectralDataset, plan: SplitPlan, cv_groups: np.ndarray) -> Prepared:
    """The checked :class:`Prepared` of data already loaded and split (``spectro-train update`` appends the line's
    rows to the configured data and its plan); refuses what :func:`prepare_data` refuses."""
    classify = cfg.task == "classification"
    _check_rows(cfg, plan.train_rows, plan.select_rows, cv_groups, classify)
    _check_width(cfg, ds.n_channels, ds.source)
    min_ratio = _check_signal(cfg, ds.X, ds.source)

    from trainer.preprocessing import make_pipeline_from_config

    def make_pre(steps: Sequence[Mapping[str, Any]]) -> Any:
        return make_pipeline_from_config([dict(s) for s in steps], ds.wavelengths, unit=ds.axis_unit)

    _check_candidates(cfg, make_pre, ds.X[plan.train_rows])
    names = [str(t) for t in ds.target_names]
    stray = [k for k in cfg.bundle.units if k not in names]
    if stray:
        raise TrainConfigError(f"bundle.units.{stray[0]}: expected a target's name ({', '.join(names)}), got "
                               f"{stray[0]!r}; its unit would be written nowhere")
    return Prepared(ds=ds, plan=plan, groups=cv_groups, min_ratio=min_ratio, classify=classify, make_pre=make_pre)


def _check_candidates(cfg: TrainConfig, make_pre: Callable[[Sequence[Mapping[str, Any]]], Any],
                      X_train: np.ndarray) -> None:
    """Build every preprocessing candidate and fit it on the training spectra, so that a misspelt step parameter,
    an even Savitzky-Golay window or a crop outside the axis is refused with the candidate's key path before anything
    trains (``fit --check`` included), not halfway through the PLS baseline."""
    for name, steps in cfg.preprocessing.candidates.items():
        try:
            make_pre(steps).fit(X_train)
        except (ValueError, TypeError) as exc:  # SpecError, numpy's own complaints, a parameter of the wrong type
            raise TrainConfigError(f"preprocessing.candidates.{name}: {exc}") from exc


#: Largest absorbance a counts -> absorbance conversion is asked to produce: 10 decades of attenuation, far beyond
#: any spectrometer's dynamic range. Training spectra above it are not absorbance.
_MAX_ABSORBANCE = 10.0
#: Default floor of the counts ratio (absorbance at most 6); lowered to cover the training spectra.
MIN_RATIO = 1e-6


def _check_width(cfg: TrainConfig, n_channels: int, source: str) -> None:
    """Refuse spectra wider than a device can send: the bundle takes at least as many pixels as the training axis,
    and one SPECTRUM frame carries at most :func:`~firmware_bridge.codec.max_spectrum_pixels` (nothing trained)."""
    from firmware_bridge.codec import max_spectrum_pixels

    most = max_spectrum_pixels(cfg.instrument.signal)
    if n_channels > most:
        raise TrainConfigError(
            f"data: expected at most {most} channels for a device that sends {cfg.instrument.signal} ([instrument] "
            f"signal: one SPECTRUM frame carries at most {most} "
            f"{'uint16' if cfg.instrument.signal == 'counts' else 'float32'} pixels, and the bundle takes at least as "
            f"many pixels as the training spectra have channels), got {n_channels} in {source}: train on fewer "
            f"channels (every second one, or the mean of neighbouring pairs, or without a range that carries "
            f"nothing) (nothing was trained)")


def _check_signal(cfg: TrainConfig, X: np.ndarray, source: str) -> float:
    """The counts conversion's ratio floor for these training spectra; refuses spectra a counts -> ``quantity``
    conversion cannot produce (they are another quantity: set ``[instrument] signal`` to what the device sends)."""
    if cfg.instrument.signal != "counts":
        return MIN_RATIO
    hint = ("; if the line instrument sends this processed signal itself, set [instrument] signal = "
            f"\"{cfg.instrument.quantity}\", else give the quantity the spectra hold")
    if cfg.instrument.quantity == "absorbance":
        top = float(np.max(X))
        if top > _MAX_ABSORBANCE:
            raise TrainConfigError(
                f"instrument: expected absorbance spectra (at most {_MAX_ABSORBANCE:g}) for a counts instrument, "
                f"got values up to {top:.4g} in {source}" + hint
            )
        return min(MIN_RATIO, 0.1 * 10.0 ** (-top))
    low, top = float(np.min(X)), float(np.max(X))
    if low <= 0 or top > 2.0:
        raise TrainConfigError(
            f"instrument: expected reflectance as a fraction (0 < R <= 2) for a counts instrument, got {low:.4g} to "
            f"{top:.4g} in {source}" + hint
        )
    return min(MIN_RATIO, 0.1 * low)



def cnn_cross_validated(cfg: TrainConfig, classify: bool, n_select: int) -> bool:
    """Whether the fit cross-validates the CNN on its own (a search's best trial may also hand its out-of-fold
    predictions over): the champion rule (``model = 'auto'``) needs its out-of-fold errors, and with ``model =
    'cnn'`` a regression without selection rows calibrates its intervals on them."""
    mode = cfg.selection.model
    return mode == "auto" or (not classify and mode == "cnn" and n_select == 0)


def _check_rows(cfg: TrainConfig, tr: np.ndarray, sel: np.ndarray, groups: np.ndarray, classify: bool) -> None:
    """Refuse, before anything trains, a split that leaves too few rows for cross-validation, the OOD model or the
    intervals (the message gives the numbers)."""
    from trainer.conformal import min_calibration_rows
    from trainer.drift import MIN_OOF_ROWS

    problems = []
    n_groups = int(np.unique(groups[tr]).size)
    # Without selection rows a regression's CNN is cross-validated even with model = 'cnn': its out-of-fold
    # predictions are the intervals' only calibration rows (pipeline.cnn.cross_validate_cnn).
    # A classification's CNN is cross-validated with model = 'auto' (the champion rule weighs its out-of-fold errors).
    cnn_cv = cnn_cross_validated(cfg, classify, sel.size)
    folds = max(cfg.cv.folds, cfg.selection.cnn_cv_folds if cnn_cv else 2,
                (cfg.search.folds or cfg.selection.cnn_cv_folds) if cfg.search.active else 2)
    if n_groups < folds:
        problems.append(f"cross-validation with {folds} folds needs at least {folds} groups of training rows, "
                        f"got {n_groups}")
    if tr.size < 5:
        problems.append(f"the OOD model needs at least 5 training rows, got {tr.size}")
    ood_rows = tr.size + (sel.size if cfg.ood.include_select else 0)
    ood_what = "training rows" + (" (selection rows included: [ood] include_select)" if cfg.ood.include_select else "")
    if cfg.ood.n_components is not None and cfg.ood.n_components > ood_rows - 2 >= 1:
        # trainer.drift.fit_ood keeps at most rows - 2 principal components (it would refuse after training).
        problems.append(f"[ood] n_components = {cfg.ood.n_components} needs at least {cfg.ood.n_components + 2} "
                        f"{ood_what} for the OOD model, got {ood_rows}: lower it, or leave it out to choose by "
                        f"[ood] variance")
    if cfg.instrument.noise is not None and ood_rows < MIN_OOF_ROWS:
        # trainer.drift.fit_ood sets limits on the line copies out of fold, which needs this many rows.
        with_sel = ("[ood] include_select = true (the OOD model then fits the selection rows too), "
                    if not cfg.ood.include_select and tr.size + sel.size >= MIN_OOF_ROWS else "")
        problems.append(f"the OOD limits on the line detector's copies ([instrument.noise]) need at least "
                        f"{MIN_OOF_ROWS} {ood_what}, got {ood_rows}: {with_sel}add calibration rows, or remove "
                        f"[instrument.noise] (the limits are then analytic, which alarm above the nominal rate on "
                        f"new spectra)")
    if cfg.ood.autoencoder:
        from trainer.autoencoder import HOLDOUT_FRACTION, MIN_FIT_ROWS, MIN_HELD_OUT_ROWS, held_out_split

        # trainer.autoencoder.fit_autoencoder splits the training rows alone this way (after training the models).
        fit_rows, held = held_out_split(tr.size, groups[tr], HOLDOUT_FRACTION, cfg.seed)
        if fit_rows.size < MIN_FIT_ROWS or held.size < MIN_HELD_OUT_ROWS:
            problems.append(f"[ood] autoencoder needs at least {MIN_FIT_ROWS} training rows to fit and "
                            f"{MIN_HELD_OUT_ROWS} held out for its limit, got {fit_rows.size} and {held.size}")
    if not classify:
        # The intervals calibrate on the selection rows' residuals plus the training rows' out-of-fold ones, which
        # every regression has unless --model cnn with selection rows skips the CNN cross-validation
        # (pipeline.calibrate).
        need = min_calibration_rows(cfg.intervals.coverage)
        cov = f"intervals at coverage {cfg.intervals.coverage:g} need at least {need}"
        if sel.size == 0 and tr.size < need:
            problems.append(f"{cov} calibration rows (training rows out of fold; [split] names no select rows), "
                            f"got {tr.size}")
        elif cfg.selection.model == "cnn" and 0 < sel.size < need:
            problems.append(f"{cov} selection rows with model = 'cnn' (no out-of-fold residuals of the training "
                            f"rows), got {sel.size}")
        elif cfg.selection.model != "cnn" and 0 < sel.size and sel.size + tr.size < need:
            problems.append(f"{cov} calibration rows (selection rows + training rows out of fold), got "
                            f"{sel.size} + {tr.size}")
    if problems:
        raise TrainConfigError("split: " + "; ".join(problems) + " (nothing was trained)")

"""The tuned PLS of a fit on any rows: preprocessing candidates x latent variables by grouped cross-validation, as
``[preprocessing]`` and ``[cv]`` say (the "PLS baseline" stage, and each outer fold of the intervals' nested CV)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from trainer.config import TrainConfig
from trainer.pipeline.prepare import Prepared

#: Seed offset of the PLS calibration's line copies (the OOD model's copies use the config's seed itself).
_CALIBRATION_COPIES_SEED = 7


def pls_calibration_rows(cfg: TrainConfig, data: Prepared, X: np.ndarray, Y: np.ndarray,
                         groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows a PLS is calibrated on: ``(X, Y, groups)`` as given, followed by their line copies when
    ``[instrument.noise] calibration_copies`` is set (:func:`trainer.line_noise.with_line_copies`)."""
    noise = cfg.instrument.noise
    if noise is None or noise.calibration_copies < 1:
        return X, Y, groups
    from trainer.line_noise import with_line_copies

    return with_line_copies(X, Y, groups, data.wavelengths_nm, noise, quantity=cfg.instrument.quantity,
                            min_ratio=data.min_ratio, seed=cfg.seed + _CALIBRATION_COPIES_SEED)


def fit_pls_on(cfg: TrainConfig, data: Prepared, X: np.ndarray, Y: np.ndarray, groups: np.ndarray) -> Any:
    """:func:`trainer.pls.fit_pls_baseline` on ``X`` (n, channels), ``Y`` (n, n_targets) grouped by ``groups``
    (and their line copies: :func:`pls_calibration_rows`)."""
    return _fit_pls_baseline(cfg, data, *pls_calibration_rows(cfg, data, X, Y, groups), measured_rows=X.shape[0],
                             warn_at_cap=True)


def _fit_pls_baseline(cfg: TrainConfig, data: Prepared, X: np.ndarray, Y: np.ndarray, groups: np.ndarray, *,
                      measured_rows: int, warn_at_cap: bool = False) -> Any:
    from trainer.pls import fit_pls_baseline

    return fit_pls_baseline(
        X, Y,
        candidates=cfg.preprocessing.candidates,
        groups=groups,
        target_names=data.ds.target_names,
        task=cfg.task,
        class_names=data.ds.class_names,
        folds=cfg.cv.folds,
        max_components=cfg.cv.max_components,
        seed=cfg.seed,
        make_preprocess=data.make_pre,
        measured_rows=measured_rows,
        warn_at_cap=warn_at_cap,
    )


def deployable_pls_on(cfg: TrainConfig, data: Prepared, X: np.ndarray, Y: np.ndarray, groups: np.ndarray) -> Any:
    """The deployable PLS (:func:`trainer.champion.deployable_pls`: each target's candidate, stacked) chosen and
    fitted on these rows alone, the PLS baseline's per-candidate log lines kept to DEBUG."""
    from trainer.champion import deployable_pls

    with _quiet("trainer.pls"):
        n = X.shape[0]
        X, Y, groups = pls_calibration_rows(cfg, data, X, Y, groups)
        base = _fit_pls_baseline(cfg, data, X, Y, groups, measured_rows=n)
    return deployable_pls(base, X, Y, candidates=cfg.preprocessing.candidates, make_pre=data.make_pre)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """INFO lines of logger ``name`` dropped while the block runs (each outer fold would repeat the stage's log)."""
    logger = logging.getLogger(name)
    level = logger.level
    if logger.getEffectiveLevel() <= logging.INFO:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)

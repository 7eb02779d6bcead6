"""The PLS's nested cross-validation on many training rows (trainer.pipeline.choose.nested_pls_oof): at most
NESTED_LARGE_FOLDS outer and inner folds from NESTED_LARGE_ROWS rows on, and a progress line per outer fold."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import trainer.conformal
from tests.support.tiny_fit import TINY_DATA
from trainer.config import parse_config
from trainer.conformal import nested_oof_predictions
from trainer.pipeline.choose import NESTED_LARGE_FOLDS, NESTED_LARGE_ROWS, nested_folds, nested_pls_oof


def _cfg(folds: int) -> Any:
    text = "seed = 0\nreport = false\n" + TINY_DATA.replace("\nfolds = 3", f"\nfolds = {folds}")
    return parse_config(text + '[preprocessing.candidates]\ncenter = [{ op = "center" }]\n', base_dir=".")


def test_nested_folds_are_capped_from_many_rows_on() -> None:
    assert (NESTED_LARGE_ROWS, NESTED_LARGE_FOLDS) == (1000, 5)
    assert nested_folds(_cfg(10), NESTED_LARGE_ROWS - 1) == 10  # the configured folds below the threshold
    assert nested_folds(_cfg(10), NESTED_LARGE_ROWS) == 5
    assert nested_folds(_cfg(3), 50_000) == 3  # fewer folds than the cap stay as configured


@pytest.mark.parametrize("rows, folds", [(NESTED_LARGE_ROWS - 1, 10), (NESTED_LARGE_ROWS, 5)])
def test_nested_pls_oof_runs_the_capped_folds_outside_and_inside(monkeypatch: pytest.MonkeyPatch, rows: int,
                                                                 folds: int) -> None:
    seen: dict[str, Any] = {}

    def fake_nested(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, **kw: Any) -> np.ndarray:
        seen.update(kw, rows=X.shape[0])
        return np.zeros_like(Y)

    monkeypatch.setattr(trainer.conformal, "nested_oof_predictions", fake_nested)
    data = SimpleNamespace(plan=SimpleNamespace(train_rows=np.arange(rows)), ds=SimpleNamespace(
        X=np.zeros((rows + 5, 3)), y=np.zeros((rows + 5, 1))), groups=np.arange(rows + 5))
    nested_pls_oof(_cfg(10), data)  # type: ignore[arg-type]  # a stand-in with the attributes it reads
    assert seen["rows"] == rows and seen["folds"] == folds
    inner_cfg = seen["fit_fn"].args[0]  # partial(deployable_pls_on, cfg, data): the inner CV's folds
    assert inner_cfg.cv.folds == folds and seen["progress"] == "nested PLS cross-validation"


class _Mean:
    def __call__(self, X: np.ndarray, Y: np.ndarray, groups: np.ndarray) -> Any:
        mean = Y.mean(axis=0)
        return SimpleNamespace(predict=lambda Xh: np.tile(mean, (len(Xh), 1)))


def test_nested_cv_logs_each_outer_fold(caplog: pytest.LogCaptureFixture) -> None:
    X, Y = np.zeros((30, 2)), np.arange(30.0)[:, None]
    with caplog.at_level(logging.INFO, logger="trainer.conformal"):
        pred = nested_oof_predictions(X, Y, np.arange(30), fit_fn=_Mean(), folds=3, seed=0, progress="nested PLS")
        nested_oof_predictions(X, Y, np.arange(30), fit_fn=_Mean(), folds=3, seed=0)  # no progress: no lines
    assert np.all(np.isfinite(pred))
    lines = [r.getMessage() for r in caplog.records if r.name == "trainer.conformal"]
    assert [line.split(",")[0] for line in lines] == [f"nested PLS: fold {i}/3 done" for i in (1, 2, 3)]
    assert lines[-1].endswith("(about 0 s to go)")

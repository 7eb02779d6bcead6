"""The rule that picks a classification CNN's conversion (trainer.pipeline.int8.choose_class_calibration), case by
case: each candidate's outputs are given (``_run_candidates`` replaced), so every branch is reached on purpose.
tests/trainer/test_quant_ranges.py runs the rule on real conversions of a real classifier."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import trainer.pipeline.int8 as int8_stage
from trainer.errors import TrainerError
from trainer.pipeline.int8 import MAX_GAP, MIN_GAIN, choose_calibration, choose_class_calibration

#: The float network's class probabilities on 8 rows: class 0 on the first four, class 1 on the others.
FLOAT = np.array([[0.7, 0.3]] * 4 + [[0.3, 0.7]] * 4)
NAMES = ("minmax", "minmax_all", "act_p9999", "int16x8")
CANDIDATES = [(name, name.encode()) for name in NAMES]


#: Why an int8 model is kept where its rounding called for int16x8: (refused, int16x8 wanted, log level, words).
KEPT_REASONS = [
    ({}, True, logging.WARNING, "no int16x8 conversion was built"),
    ({"int16x8": "no 16-bit kernel here"}, True, logging.WARNING, "cannot run the int16x8 conversion (no 16-bit"),
    ({}, False, logging.INFO, 'int16x8 = "never"'),
]


def _flipped(k: int, shift: float = 0.0) -> np.ndarray:
    """The float probabilities with the class of the first ``k`` rows changed, every probability moved by ``shift``
    (its RMS difference from the float ones, when no class changes)."""
    out = FLOAT + np.array([-shift, shift])
    out[:k] = out[:k, ::-1]
    return out


def _choose(monkeypatch: pytest.MonkeyPatch, outs: dict[str, np.ndarray], refused: dict[str, str] | None = None,
            **kwargs: bool) -> dict:
    monkeypatch.setattr(int8_stage, "_run_candidates", lambda cands, X, shape: (outs, dict(refused or {})))
    chosen, entry = choose_class_calibration(CANDIDATES, np.zeros((FLOAT.shape[0], 3)), FLOAT, **kwargs)
    assert chosen == dict(CANDIDATES)[entry["chosen"]]
    return entry


def test_equal_counts_keep_the_plain_conversion_unless_a_variant_is_closer_by_more_than_min_gain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    near = {"minmax": _flipped(0, 0.01), "minmax_all": _flipped(0, 0.01 * (1 - MIN_GAIN / 2)),
            "act_p9999": _flipped(0, 0.02), "int16x8": _flipped(0, 0.0001)}
    entry = _choose(monkeypatch, near)
    assert entry["chosen"] == entry["int8_chosen"] == "minmax"  # no class changed: int8 stays, int16x8 not needed
    far = dict(near, minmax_all=_flipped(0, 0.01 * (1 - 2 * MIN_GAIN)))
    assert _choose(monkeypatch, far)["chosen"] == "minmax_all"


def test_a_variant_that_changes_fewer_classes_wins_whatever_its_probabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    barely = FLOAT.copy()
    barely[:2] = [0.49, 0.51]  # two classes changed by a hair: closer in probabilities than minmax_all below
    entry = _choose(monkeypatch, {"minmax": barely, "minmax_all": _flipped(1, 0.1),
                                  "act_p9999": _flipped(2), "int16x8": _flipped(1)})
    assert entry["rms_prob"]["minmax"] < entry["rms_prob"]["minmax_all"]
    # minmax_all changes one class, as int16x8 does: not fewer, so the int8 variant is kept
    assert entry["int8_chosen"] == entry["chosen"] == "minmax_all"
    assert entry["flips"] == {"minmax": 2, "minmax_all": 1, "act_p9999": 2, "int16x8": 1}


def test_the_wide_conversion_replaces_an_int8_model_that_changes_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = _choose(monkeypatch, {"minmax": _flipped(1), "minmax_all": _flipped(2), "act_p9999": _flipped(3),
                                  "int16x8": _flipped(0, 0.001)})
    assert entry["int8_chosen"] == "minmax" and entry["chosen"] == "int16x8" and entry["int16x8_built"]
    assert entry["rows"] == FLOAT.shape[0] and entry["gap_to_error"] is None


def test_a_refused_plain_conversion_leaves_the_next_int8_candidate_as_the_plain_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outs = {"minmax_all": _flipped(0, 0.01), "act_p9999": _flipped(0, 0.01 * (1 - MIN_GAIN / 2)),
            "int16x8": _flipped(0)}
    entry = _choose(monkeypatch, outs, {"minmax": "XNNPACK: unsupported scale"})
    assert entry["chosen"] == "minmax_all" and entry["refused"] == {"minmax": "XNNPACK: unsupported scale"}


@pytest.mark.parametrize(("refused", "wanted", "level", "says"), KEPT_REASONS)
def test_an_int8_model_that_changes_classes_without_a_wide_conversion_is_kept_and_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, refused: dict[str, str], wanted: bool,
    level: int, says: str,
) -> None:
    outs = {"minmax": _flipped(1), "minmax_all": _flipped(2), "act_p9999": _flipped(2)}
    with caplog.at_level(logging.INFO, logger="trainer.pipeline.int8"):
        entry = _choose(monkeypatch, outs, refused, wide_wanted=wanted)
    assert entry["chosen"] == "minmax" and not entry["int16x8_built"]
    said = [r for r in caplog.records if "changes the float network's class on 1 of 8" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == level and says in said[0].getMessage()


@pytest.mark.parametrize(("refused", "wanted", "level", "says"), KEPT_REASONS)
def test_a_regression_int8_model_over_the_gap_without_a_wide_conversion_says_why_it_is_kept(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, refused: dict[str, str], wanted: bool,
    level: int, says: str,
) -> None:
    """The same three reasons on the regression chooser (``choose_calibration``): its int8 gap is 10 x MAX_GAP."""
    ref = np.linspace(-1.0, 1.0, 8)[:, None]
    outs = {"minmax": ref + 0.01, "minmax_all": ref + 0.02}
    monkeypatch.setattr(int8_stage, "_run_candidates", lambda cands, X, shape: (outs, dict(refused)))
    with caplog.at_level(logging.INFO, logger="trainer.pipeline.int8"):
        _, entry = choose_calibration(CANDIDATES[:2], np.zeros((8, 3)), ref, roles=("train",), y_scale=[1.0],
                                      cnn_error=[0.01 / (10 * MAX_GAP)], wide_wanted=wanted)
    assert entry["chosen"] == "minmax" and max(entry["gap_to_error"]) == pytest.approx(10 * MAX_GAP)
    said = [r for r in caplog.records if "of the CNN's error (limit" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == level and says in said[0].getMessage()


def test_no_runnable_int8_candidate_is_an_error_that_names_each_reason() -> None:
    """The real ``_run_candidates``: bytes that are no ``.tflite`` are refused by the edge runtime."""
    junk = [("minmax", b"not a model"), ("minmax_all", b"nor this")]
    with pytest.raises(TrainerError, match="cannot run any int8 conversion.*minmax: .*minmax_all: "):
        choose_class_calibration(junk, np.zeros((8, 3)), FLOAT)

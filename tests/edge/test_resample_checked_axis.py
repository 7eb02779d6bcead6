"""The ``resample`` step judges a device axis once per immutable array (edge.preprocess.instrument.Resample): the
same read-only array again skips the checks and gives the same bits; any other array, or a writable one that may
have changed since, is judged again."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import AxisContractError
from edge.preprocess import Resample

GRID = np.linspace(700.0, 1000.0, 61)


def _axis(lo: float = 650.0, hi: float = 1050.0, n: int = 128, *, frozen: bool = True) -> np.ndarray:
    w = np.linspace(lo, hi, n)
    w.flags.writeable = not frozen
    return w


def test_the_same_immutable_axis_gives_the_same_bits_as_a_fresh_step() -> None:
    step, w = Resample(GRID), _axis()
    x = np.random.default_rng(1).normal(size=(3, 128))
    first = [step.transform(row, wavelengths=w) for row in x]
    again = [step.transform(row, wavelengths=w) for row in x]  # judged once, remembered
    fresh = [Resample(GRID).transform(row, wavelengths=w.copy()) for row in x]
    for a, b, c in zip(first, again, fresh):
        assert a.tobytes() == b.tobytes() == c.tobytes()
    assert step.transform(x, wavelengths=w).tobytes() == np.stack(fresh).tobytes()


def test_a_descending_immutable_axis_is_remembered_reversed() -> None:
    step, w = Resample(GRID), _axis()[::-1].copy()
    w.flags.writeable = False
    x = np.random.default_rng(2).normal(size=128)
    once = step.transform(x, wavelengths=w)
    twice = step.transform(x, wavelengths=w)
    assert once.tobytes() == twice.tobytes() == Resample(GRID).transform(x[::-1], wavelengths=w[::-1]).tobytes()


def test_another_axis_is_judged_again_after_a_good_one() -> None:
    step = Resample(GRID)
    step.transform(np.ones(128), wavelengths=_axis())
    with pytest.raises(AxisContractError, match="expected a wavelength axis covering"):
        step.transform(np.ones(128), wavelengths=_axis(750.0, 1050.0))
    with pytest.raises(AxisContractError, match="expected wavelengths of shape"):
        step.transform(np.ones(100), wavelengths=_axis())


def test_the_remembered_axis_still_refuses_spectra_of_another_length() -> None:
    step, w = Resample(GRID), _axis()
    step.transform(np.ones(128), wavelengths=w)
    with pytest.raises(AxisContractError, match=r"expected wavelengths of shape \(100,\)"):
        step.transform(np.ones(100), wavelengths=w)


def test_a_writable_axis_is_judged_at_every_call() -> None:
    step, w = Resample(GRID), _axis(frozen=False)
    step.transform(np.ones(128), wavelengths=w)
    w[5] = w[4]  # changed in place since: no longer strictly monotonic
    with pytest.raises(AxisContractError, match="strictly monotonic"):
        step.transform(np.ones(128), wavelengths=w)


def test_a_read_only_view_of_a_writable_array_is_not_remembered() -> None:
    base = _axis(frozen=False)
    view = base[:]
    view.flags.writeable = False
    step = Resample(GRID)
    step.transform(np.ones(128), wavelengths=view)
    base[5] = base[4]  # the view's memory changed under it
    with pytest.raises(AxisContractError, match="strictly monotonic"):
        step.transform(np.ones(128), wavelengths=view)

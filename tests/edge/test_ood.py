"""Tests of edge.ood: T2/Q scoring by the formulas, single vs batch shapes, dict round trip, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from edge.errors import BundleError, InputContractError
from edge.ood import OodModel
from tests.support.trained import ALL, committed

SCORE_RTOL = 1e-12


def _model() -> OodModel:
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(12, 3)))
    return OodModel(mean=rng.normal(size=(6, 2)), components=q.T, explained_variance=np.array([3.0, 2.0, 0.5]),
                    t2_limit=11.0, q_limit=0.7, alpha=0.05)


def test_scores_follow_the_formulas() -> None:
    m = _model()
    X = np.random.default_rng(1).normal(size=(4, 6, 2))
    t2, q = m.score(X)
    xc = X.reshape(4, -1) - m.mean.reshape(-1)
    t = xc @ m.components.T
    np.testing.assert_allclose(t2, (t**2 / m.explained_variance).sum(axis=1), rtol=SCORE_RTOL)
    np.testing.assert_allclose(q, ((xc - t @ m.components) ** 2).sum(axis=1), rtol=SCORE_RTOL)
    t2_one, q_one = m.score(X[0])
    assert t2_one.shape == () and q_one.shape == ()
    assert float(t2_one) == pytest.approx(float(t2[0]))
    assert m.is_outlier(X).shape == (4,)


def test_wrong_shape_is_an_input_contract_error() -> None:
    with pytest.raises(InputContractError, match=r"expected preprocessed spectra of shape \(6, 2\)"):
        _model().score(np.zeros((3, 12)))


def test_dict_round_trip_through_json() -> None:
    m = _model()
    back = OodModel.from_dict(json.loads(json.dumps(m.to_dict(), allow_nan=False)))
    X = np.random.default_rng(2).normal(size=(5, 6, 2))
    np.testing.assert_array_equal(back.score(X)[0], m.score(X)[0])
    assert (back.t2_limit, back.q_limit, back.alpha, back.feature_shape) == (11.0, 0.7, 0.05, (6, 2))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format_version": 9}, "format_version: expected an integer in 1..3, got 9"),
        ({"t2_limit": -1.0}, "t2_limit: expected a number > 0"),
        ({"explained_variance": [1.0, 2.0]}, "expected 3 explained variances, got 2"),
        ({"mean": [0.0] * 5}, "expected 12 mean values"),
        ({"components": [[0.0] * 11] * 3}, r"expected components of shape \(k, 12\)"),
        ({"explained_variance": [1.0, 0.0, 1.0]}, "explained variances must all be > 0"),
    ],
)
def test_bad_dicts_raise_bundle_errors(change: dict[str, object], message: str) -> None:
    d = _model().to_dict()
    d.update(change)
    with pytest.raises(BundleError, match=message):
        OodModel.from_dict(d)
    d = _model().to_dict()
    del d["q_limit"]
    with pytest.raises(BundleError, match="missing key\\(s\\) q_limit"):
        OodModel.from_dict(d)


def _scaled() -> OodModel:
    m = _model()
    scale = np.linspace(0.5, 4.0, 12).reshape(6, 2)
    return OodModel(mean=m.mean, components=m.components, explained_variance=m.explained_variance, t2_limit=11.0,
                    q_limit=0.7, alpha=0.05, scale=scale)


def test_scale_divides_the_centred_spectrum_before_projecting() -> None:
    m = _scaled()
    assert m.scale is not None
    X = np.random.default_rng(3).normal(size=(4, 6, 2))
    z = (X - m.mean).reshape(4, -1) / m.scale.reshape(-1)
    t = z @ m.components.T
    t2, q = m.score(X)
    np.testing.assert_allclose(t2, (t**2 / m.explained_variance).sum(axis=1), rtol=SCORE_RTOL)
    np.testing.assert_allclose(q, ((z - t @ m.components) ** 2).sum(axis=1), rtol=SCORE_RTOL)
    t2_one, q_one = m.score(X[1])
    assert t2_one.shape == () and float(q_one) == pytest.approx(float(q[1]), rel=SCORE_RTOL)
    # The unscaled model scores the same spectra otherwise: the scale is not ignored.
    assert not np.allclose(_model().score(X)[1], q)


def test_scaled_model_round_trips_as_format_2_and_unscaled_stays_format_1() -> None:
    m = _scaled()
    d = json.loads(json.dumps(m.to_dict(), allow_nan=False))
    assert d["format_version"] == 2 and len(d["scale"]) == 12
    back = OodModel.from_dict(d)
    X = np.random.default_rng(4).normal(size=(5, 6, 2))
    np.testing.assert_array_equal(back.score(X)[1], m.score(X)[1])
    assert back.scale is not None and back.scale.shape == (6, 2)
    plain = _model().to_dict()
    assert plain["format_version"] == 1 and "scale" not in plain


def test_committed_bundles_ood_members_load_as_format_1_and_write_back_unchanged() -> None:
    seen = 0
    for path in ALL:
        if path.suffix != ".spectrolite":
            continue
        with zipfile.ZipFile(committed(path)) as z:
            if "ood.json" not in z.namelist():
                continue
            d = json.loads(z.read("ood.json"))
        m = OodModel.from_dict(d)
        assert d["format_version"] == 1 and m.scale is None
        assert m.to_dict() == d
        seen += 1
    assert seen >= 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scale": [1.0] * 11 + [0.0]}, r"expected every scale value finite and > 0, got 0.0 at feature 11"),
        ({"scale": [-1.0] + [1.0] * 11}, r"expected every scale value finite and > 0, got -1.0 at feature 0"),
        ({"scale": [1.0] * 5}, r"expected 12 scale values, got shape \(5,\)"),
        ({"scale": [[1.0] * 12]}, r"expected 12 scale values, got shape \(1, 12\)"),
        ({"scale": "wide"}, "ood: malformed arrays"),
        ({"scale": None}, "ood: malformed arrays|expected 12 scale values"),
    ],
)
def test_bad_scales_are_refused(change: dict[str, object], message: str) -> None:
    d = _scaled().to_dict()
    d.update(change)
    with pytest.raises(BundleError, match=message):
        OodModel.from_dict(d)


def test_format_2_needs_its_scale_and_format_1_refuses_one() -> None:
    d = _scaled().to_dict()
    del d["scale"]
    with pytest.raises(BundleError, match=r"missing key\(s\) scale"):
        OodModel.from_dict(d)
    d = _scaled().to_dict()
    d["format_version"] = 1
    with pytest.raises(BundleError, match="expected no scale in format 1"):
        OodModel.from_dict(d)


def test_a_scale_built_in_code_is_checked_too() -> None:
    m = _model()
    with pytest.raises(BundleError, match=r"expected a scale of shape \(6, 2\), got \(3, 4\)"):
        OodModel(mean=m.mean, components=m.components, explained_variance=m.explained_variance, t2_limit=1.0,
                 q_limit=1.0, scale=np.ones((3, 4)))
    with pytest.raises(BundleError, match="got nan at feature 2"):
        OodModel(mean=m.mean, components=m.components, explained_variance=m.explained_variance, t2_limit=1.0,
                 q_limit=1.0, scale=np.where(np.arange(12) == 2, np.nan, 1.0))


def test_arrays_are_read_only() -> None:
    with pytest.raises(ValueError):
        _model().mean[0, 0] = 1.0


def test_importing_edge_ood_loads_no_heavy_library() -> None:
    code = ("import sys, edge.ood, edge.intervals; "
            "bad = [m for m in ('tensorflow', 'keras', 'sklearn', 'scipy') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

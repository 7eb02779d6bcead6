"""The noise-whitened OOD model (``[instrument.noise]``) through a real bundle: fitted by trainer.drift on the
tablets' line copies (trainer.line_noise), written by trainer.bundle, read and scored by the edge."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from edge.bundle import load_bundle
from tests.support.bundles import tiny_models, write_regression_bundle
from trainer.config import LineNoiseConfig
from trainer.drift import fit_ood
from trainer.line_noise import line_spectra

#: In-distribution line spectra: alpha = 1 % nominal, 155 test tablets x 2 line copies (sampling noise, and the
#: test tablets differ a little from the training ones).
MAX_LINE_ALARMS = 0.06


def test_whitened_ood_is_written_as_format_2_and_scored_by_the_edge_as_fitted(datasets_dir: Path,
                                                                           tmp_path: Path) -> None:
    m = tiny_models(datasets_dir)
    noise = LineNoiseConfig(copies=2)
    line_pre = np.stack([m.pipeline.transform(c) for c in line_spectra(m.X_train, m.wavelengths, noise, seed=0)])
    ood = fit_ood(m.X_pre_train, 10, alpha=0.01, X_pre_line=line_pre)
    path = write_regression_bundle(m, tmp_path / "whitened.spectrolite", ood=ood)
    with zipfile.ZipFile(path) as z:
        d = json.loads(z.read("ood.json"))
    assert d["format_version"] == 2 and len(d["scale"]) == m.X_pre_train.shape[1]

    b = load_bundle(path)
    assert b.ood is not None and b.ood.scale is not None
    np.testing.assert_array_equal(b.ood.scale, ood.scale)
    test_line = line_spectra(m.X_test, m.wavelengths, noise, seed=1).reshape(-1, m.X_test.shape[1])
    t2, q = b.ood.score(b.preprocess(test_line))
    t2_ref, q_ref = ood.score(m.pipeline.transform(test_line))
    np.testing.assert_allclose(t2, t2_ref, rtol=1e-9)
    np.testing.assert_allclose(q, q_ref, rtol=1e-9)
    assert np.mean(b.ood.is_outlier(b.preprocess(test_line))) <= MAX_LINE_ALARMS

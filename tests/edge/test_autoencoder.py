"""The autoencoder OOD statistic on the device (no TensorFlow): the committed trainer-built bundle with an autoencoder
(tests/support/trained.py ``DEMO_AE``) scores every spectrum, one at a time and in batches alike, flags a spectrum
far from training and not a normal one, feeds the drift monitor; bundles without one still load and score as before;
a manifest that declares half of it is refused."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from edge.bundle import AUTOENCODER, load_bundle, sha256_hex
from edge.drift import DriftMonitor, DriftState
from edge.errors import BundleError
from edge.inference import InferenceEngine, Prediction
from edge.publish.schema import Quality
from edge.references import ReferenceKind, ReferenceSet, ReferenceSpectrum
from tests.support import trained
from tests.support.daemon import offline_stream

#: Spectra of the stream, and where the simulator's foreign band starts growing in (full size 20 spectra later).
N_SPECTRA, DRIFT_AT = 120, 60


def _engine_and_frames(bundle_path: Path, drift_at: int | None = DRIFT_AT) -> tuple[InferenceEngine, Any, dict[str,
                                                                                                          Any]]:
    stream = offline_stream(N_SPECTRA, drift_at=drift_at)
    now = time.time()
    refs = (ReferenceSet()
            .with_spectrum(ReferenceSpectrum(ReferenceKind.DARK, stream["dark"].counts, now, 10_000))
            .with_spectrum(ReferenceSpectrum(ReferenceKind.WHITE, stream["white"].counts, now, 10_000)))
    engine = InferenceEngine(load_bundle(trained.committed(bundle_path)), clock=lambda: now)
    kw = {"wavelengths_nm": stream["status"].wavelengths_nm(), "now_s": now}
    return engine, refs, {"stream": stream, "kw": kw}


@pytest.fixture(scope="module")
def ae_run() -> dict[str, Any]:
    engine, refs, ctx = _engine_and_frames(trained.DEMO_AE)
    spectra = ctx["stream"]["spectra"]
    one = [engine.process(s, refs, **ctx["kw"]) for s in spectra]
    many = engine.process_many(spectra, refs, **ctx["kw"])
    return {"engine": engine, "one": one, "many": many}


def test_the_committed_bundle_carries_an_autoencoder_that_passes_its_self_test() -> None:
    bundle = load_bundle(trained.committed(trained.DEMO_AE))
    assert bundle.manifest["format_version"] == 3 and AUTOENCODER in bundle.manifest["members"]
    assert bundle.autoencoder is not None and bundle.autoencoder.runtime.is_quantized
    assert bundle.self_test is not None and bundle.self_test.summary().startswith("PASSED")
    assert bundle.autoencoder.limit == bundle.manifest["autoencoder"]["limit"] > 0


def test_every_prediction_carries_the_autoencoder_score_and_limit(ae_run: dict[str, Any]) -> None:
    limit = ae_run["engine"].autoencoder.limit
    for p in ae_run["one"]:
        assert isinstance(p, Prediction) and p.ood is not None
        assert p.ood.ae_limit == limit and p.ood.ae_score is not None and p.ood.ae_score >= 0
        d = p.ood.to_dict()
        assert d["ae_score"] == p.ood.ae_score and d["ae_limit"] == limit
        assert p.ae_ratio == pytest.approx(p.ood.ae_score / limit)


def test_a_batch_scores_each_spectrum_as_one_at_a_time(ae_run: dict[str, Any]) -> None:
    assert ae_run["engine"].autoencoder.runtime.batches_invoked_whole  # the autoencoder batches like the model
    one, many = ae_run["one"], ae_run["many"]
    assert [p.ood.ae_score for p in many] == [p.ood.ae_score for p in one]
    assert [p.flags for p in many] == [p.flags for p in one] and [p.reasons for p in many] == [p.reasons for p in one]


def test_normal_spectra_stay_below_the_limit_far_ones_are_flagged(ae_run: dict[str, Any]) -> None:
    """Before the foreign band: below the autoencoder's limit, no autoencoder reason; at its full size: every
    spectrum over it, flagged out_of_distribution with the autoencoder's reason."""
    preds = ae_run["one"]
    normal, far = preds[:DRIFT_AT], preds[DRIFT_AT + 20:]
    assert all(p.ae_ratio < 1.0 for p in normal), max(p.ae_ratio for p in normal)
    assert not any("autoencoder" in r for p in normal for r in p.reasons)
    for p in far:
        assert p.ae_ratio > 1.0 and Quality.OUT_OF_DISTRIBUTION in p.flags
        assert p.flags.count(Quality.OUT_OF_DISTRIBUTION) == 1  # T2/Q may flag it too: one flag, two reasons
        assert any(r.startswith("autoencoder reconstruction error ") and "(limit " in r for r in p.reasons)


def test_the_drift_monitor_raises_ood_ae_on_the_autoencoder_ratio(ae_run: dict[str, Any]) -> None:
    """Only the autoencoder's ratio goes in (T2, Q and predictions left out): ``ood_ae`` is raised after the
    band grows in, and not before."""
    monitor = DriftMonitor()
    raised_at = None
    for i, p in enumerate(ae_run["one"]):
        for ev in monitor.observe_prediction(p.seq, ae_ratio=p.ae_ratio):
            if ev.monitor == "ood_ae" and ev.state is DriftState.RAISED and raised_at is None:
                raised_at = i
    assert raised_at is not None and raised_at >= DRIFT_AT, raised_at
    assert "ood_ae" in monitor.active() and monitor.snapshot()["ood_ae"]["raised"] is True


def test_a_bundle_without_an_autoencoder_scores_as_before() -> None:
    engine, refs, ctx = _engine_and_frames(trained.DEMO_V1, drift_at=None)
    assert engine.autoencoder is None
    p = engine.process(ctx["stream"]["spectra"][0], refs, **ctx["kw"])
    assert isinstance(p, Prediction) and p.ood is not None
    assert p.ood.ae_score is None and p.ood.ae_limit is None and p.ae_ratio is None
    monitor = DriftMonitor()
    monitor.observe_prediction(p.seq, t2_ratio=p.t2_ratio, q_ratio=p.q_ratio, ae_ratio=p.ae_ratio)
    assert "ood_ae" not in monitor.snapshot()  # never fed: no score in the metrics


def _rewritten(tmp_path: Path, edit: Any) -> Path:
    """The committed AE bundle with ``edit(members, manifest)`` applied and the manifest's hashes redone."""
    with zipfile.ZipFile(trained.committed(trained.DEMO_AE)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(members.pop("manifest.json"))
    edit(members, manifest)
    manifest["members"] = {n: {"sha256": sha256_hex(b), "size": len(b)} for n, b in members.items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for n, b in members.items():
            zf.writestr(n, b)
    path = tmp_path / "edited.spectrolite"
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m, man: m.pop(AUTOENCODER), "autoencoder: expected the autoencoder section and the member"),
    (lambda m, man: man.pop("autoencoder"), "autoencoder: expected the autoencoder section and the member"),
    (lambda m, man: man.update(format_version=2), "unknown key"),
    (lambda m, man: man["autoencoder"].update(limit=0), "autoencoder.limit: expected a number > 0"),
    (lambda m, man: man["autoencoder"].update(score="max_abs"), "autoencoder.score: expected 'mean_squared_error'"),
    (lambda m, man: m.update({AUTOENCODER: m["model.tflite"]}), "expected as many outputs as inputs"),
])
def test_a_half_declared_or_wrong_autoencoder_is_refused(edit: Any, message: str, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=message):
        load_bundle(_rewritten(tmp_path, edit))

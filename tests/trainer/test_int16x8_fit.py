"""A fit that deploys the int16x8 CNN (trainer.pipeline.int8: 16-bit activations, weights fine-tuned onto their int8
grid), through the real seam: the bundle ``fit`` writes, loaded by the edge's own code, predicts what metrics.json
reports for the CNN, with float32 input and output tensors and a golden self-test that passes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge.bundle import load_bundle
from tests.support.tiny_fit import CONFIG, write_synthetic
from trainer.config import load_config
from trainer.pipeline import fit
from trainer.quant_ranges import CANDIDATES, WIDE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny config with the CNN deployed (``--model cnn``) and the gap limit at 0, so that the rule takes the
    wide conversion whenever it is closer to the float network by more than MIN_GAIN (the tiny network's int8 gap
    is below the shipped 5 % of its error)."""
    import trainer.pipeline.int8 as int8_stage

    base = tmp_path_factory.mktemp("fit16")
    write_synthetic(base / "synthetic.npz")
    (base / "train.toml").write_text(CONFIG + '[selection]\nmodel = "cnn"\n')
    out = base / "out"
    mp = pytest.MonkeyPatch()
    mp.setattr(int8_stage, "MAX_GAP", 0.0)
    try:
        metrics = fit(load_config(base / "train.toml"), out)
    finally:
        mp.undo()
    return {"metrics": metrics, "bundle": out / "synthetic-conc.spectrolite"}


def _rows(m: dict[str, Any], model: str) -> dict[tuple[str, str], float]:
    return {(e["split"], e["target"]): e["rmsep"] for e in m["evaluations"] if e["model"] == model}


def test_the_int16x8_conversion_is_deployed_and_recorded(fitted: dict[str, Any]) -> None:
    m = fitted["metrics"]
    cal = m["cnn_int8_calibration"]
    assert m["deployed_model"] == "cnn" and cal["chosen"] == WIDE and cal["int8_chosen"] in CANDIDATES
    assert cal["rms_std"][WIDE] < (1 - 0.02) * cal["rms_std"][cal["int8_chosen"]]
    assert max(cal["gap_to_error"]) > 0.0 and cal["int16x8"] == "auto"
    step = m["cnn_int8_output_step"]["conc_pct"]
    assert 0 < step < 0.01  # the 16-bit output step, in % (an int8 step of the same range is 256 x larger)


def test_the_edge_loads_it_as_a_float_in_float_out_model_and_predicts_what_the_trainer_measured(
    fitted: dict[str, Any],
) -> None:
    bundle = load_bundle(fitted["bundle"])
    assert bundle.self_test is not None and bundle.self_test.summary().startswith("PASSED")
    rt = bundle.runtime
    assert rt.input_dtype == np.float32 and rt.output_dtype == np.float32 and rt.output_affine is not None
    m = fitted["metrics"]
    # golden outputs within one 16-bit output step (in target units), as an int8 model gets one int8 step
    step = max(m["cnn_int8_output_step"].values())
    assert bundle.manifest["golden"]["output_float_atol"] == pytest.approx(max(1e-5, step), rel=1e-6)
    deployed, int8 = _rows(m, "deployed"), _rows(m, "cnn_int8")
    assert deployed.keys() == int8.keys() and deployed
    for key, value in deployed.items():
        assert value == pytest.approx(int8[key], rel=1e-5), key
    # and the wide conversion stays close to the float network on the test rows
    flt = _rows(m, "cnn_float")
    assert abs(int8[("test", "conc_pct")] / flt[("test", "conc_pct")] - 1) < 0.01


@pytest.fixture(scope="module")
def fitted_classes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The three-class tiny config with the CNN deployed and its ``int16x8`` conversion taken whatever the classes
    its int8 model changes (the choice itself: tests/trainer/test_class_calibration.py)."""
    import trainer.pipeline.int8 as int8_stage
    from tests.support.tiny_fit import CLASS_CONFIG, write_classes

    base = tmp_path_factory.mktemp("fit16c")
    write_classes(base / "classes.npz")
    (base / "train.toml").write_text(CLASS_CONFIG + '[selection]\nmodel = "cnn"\n')
    real = int8_stage.choose_class_calibration

    def wide(candidates: list[tuple[str, bytes]], *args: Any, **kwargs: Any) -> tuple[bytes, dict[str, Any]]:
        _, entry = real(candidates, *args, **kwargs)
        return dict(candidates)[WIDE], dict(entry, chosen=WIDE)

    mp = pytest.MonkeyPatch()
    mp.setattr(int8_stage, "choose_class_calibration", wide)
    try:
        metrics = fit(load_config(base / "train.toml"), base / "out")
    finally:
        mp.undo()
    return {"metrics": metrics, "out": base / "out"}


def test_an_int16x8_classifier_bundle_passes_its_self_test_and_serves_what_the_trainer_measured(
    fitted_classes: dict[str, Any],
) -> None:
    m, out = fitted_classes["metrics"], fitted_classes["out"]
    assert m["deployed_model"] == "cnn" and m["cnn_int8_calibration"]["chosen"] == WIDE
    bundle = load_bundle(out / "synthetic-grade.spectrolite")
    assert bundle.self_test is not None and bundle.self_test.summary().startswith("PASSED")
    rt = bundle.runtime
    assert rt.arithmetic == WIDE and rt.output_dtype == np.float32 and rt.output_affine is None
    # golden probabilities within one 16-bit step of the softmax output (1/32768), not an int8 step (1/256)
    assert bundle.manifest["golden"]["output_float_atol"] == pytest.approx(1 / 32768, rel=1e-6)
    acc = {(e["model"], e["split"]): e["accuracy"] for e in m["evaluations"]}
    for split in ("train", "select", "test"):
        assert acc[("deployed", split)] == acc[("cnn_int8", split)], split
    assert "int16x8 (int8 variant" in (out / "report" / "index.html").read_text()

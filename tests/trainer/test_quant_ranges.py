"""Tests of the int8 calibration variants (trainer.quant_ranges, trainer.quantize.convert_int8_candidates) and of
the choice among them (trainer.pipeline.int8.choose_calibration, choose_class_calibration): real Keras model -> real
.tflite -> real LiteRT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.runtime import ModelRuntime
from tests.support.bundles import SEED, TinyModels, tiny_models
from trainer.pipeline.int8 import MAX_GAP, MIN_GAIN, choose_calibration, choose_class_calibration
from trainer.quant_ranges import (
    CANDIDATES,
    WIDE,
    Structure,
    calibrate,
    int16x8_model,
    output_scale,
    quantize_calibrated,
    structure,
    tensor_ranges,
    with_headroom,
    with_ranges,
)
from trainer.quantize import QuantizeError, convert_int8, convert_int8_candidates

#: The MLIR quantiser may nudge a range so that 0 is exactly representable: scales agree to this relative error.
SCALE_RTOL = 0.02


@pytest.fixture(scope="module")
def models(datasets_dir: Path) -> TinyModels:
    return tiny_models(datasets_dir)


@pytest.fixture(scope="module")
def rows(models: TinyModels) -> np.ndarray:
    return np.ascontiguousarray(models.X_pre_train[:120, :, None], dtype=np.float32)


@pytest.fixture(scope="module")
def candidates(models: TinyModels) -> list[tuple[str, bytes]]:
    return convert_int8_candidates(models.keras_model, models.X_pre_train[:120], models.X_pre_train,
                                   subprocess=False, seed=SEED)


def test_unedited_calibration_predicts_as_the_plain_conversion(models: TinyModels, rows: np.ndarray) -> None:
    plain = ModelRuntime(convert_int8(models.keras_model, rows, subprocess=False, seed=SEED))
    again = ModelRuntime(quantize_calibrated(calibrate(models.keras_model, rows)))
    assert again.input_quantization == plain.input_quantization
    assert again.output_quantization == plain.output_quantization
    np.testing.assert_array_equal(again.predict(models.X_pre_test), plain.predict(models.X_pre_test))


def test_edited_input_range_sets_the_input_scale(models: TinyModels, rows: np.ndarray) -> None:
    cal = calibrate(models.keras_model, rows)
    ranges, inputs, _ = tensor_ranges(cal)
    lo, hi = ranges[inputs[0]]
    assert lo < 0 < hi
    wide = (2 * lo, 2 * hi)
    same = [i for i, r in ranges.items() if r == ranges[inputs[0]]]
    rt = ModelRuntime(quantize_calibrated(with_ranges(cal, dict.fromkeys(same, wide))))
    assert rt.input_dtype == np.int8 and rt.output_dtype == np.int8
    plain_scale = ModelRuntime(quantize_calibrated(cal)).input_quantization[0]
    assert rt.input_quantization[0] == pytest.approx(2 * plain_scale, rel=SCALE_RTOL)
    with pytest.raises(ValueError, match="includes 0"):
        with_ranges(cal, {inputs[0]: (0.5, hi)})


def test_candidates_come_in_order_and_the_first_is_the_plain_conversion(
    models: TinyModels, candidates: list[tuple[str, bytes]]
) -> None:
    assert tuple(name for name, _ in candidates) == (*CANDIDATES, WIDE)
    plain = convert_int8(models.keras_model, models.X_pre_train[:120], subprocess=False, seed=SEED)
    assert candidates[0][1] == plain
    by_name = {name: ModelRuntime(b) for name, b in candidates}
    for name in CANDIDATES:
        assert by_name[name].input_dtype == np.int8 and by_name[name].output_dtype == np.int8
    # the 16-bit-activation conversion quantises inside the graph: float tensors at the edge
    assert by_name[WIDE].input_dtype == np.float32 and by_name[WIDE].output_dtype == np.float32
    # calibrating on more rows never narrows the min/max input range
    assert by_name["minmax_all"].input_quantization[0] >= by_name["minmax"].input_quantization[0]
    # clipping the hidden activations leaves the input and the output alone, and changes the model
    assert by_name["act_p9999"].input_quantization == by_name["minmax_all"].input_quantization
    assert by_name["act_p9999"].output_quantization == by_name["minmax_all"].output_quantization
    X = models.X_pre_test
    assert not np.array_equal(by_name["act_p9999"].predict(X), by_name["minmax_all"].predict(X))


def test_int16x8_false_converts_the_int8_variants_only(models: TinyModels) -> None:
    """``[quantize] int16x8 = "never"``: no fine-tuning, no 16-bit conversion."""
    got = convert_int8_candidates(models.keras_model, models.X_pre_train[:120], models.X_pre_train,
                                  subprocess=False, seed=SEED, int16x8=False)
    assert tuple(name for name, _ in got) == CANDIDATES


def test_a_failed_int16x8_conversion_leaves_the_int8_variants_and_says_so(
    models: TinyModels, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import trainer.quant_ranges

    def refuse(keras_model: object, rows: np.ndarray, headroom: float = 0.0) -> bytes:
        raise RuntimeError("op FOO has no 16-bit kernel")

    monkeypatch.setattr(trainer.quant_ranges, "int16x8_model", refuse)
    with caplog.at_level("WARNING", logger="trainer.quantize"):
        got = convert_int8_candidates(models.keras_model, models.X_pre_train[:120], models.X_pre_train,
                                      subprocess=False, seed=SEED)
    assert tuple(name for name, _ in got) == CANDIDATES
    assert any("16-bit-activation conversion failed: op FOO has no 16-bit kernel" in r.getMessage()
               and "int16x8 left out" in r.getMessage() for r in caplog.records)


def test_choice_keeps_the_candidate_closest_to_the_float_outputs(
    models: TinyModels, candidates: list[tuple[str, bytes]]
) -> None:
    X = models.X_pre_test
    outs = {name: np.asarray(ModelRuntime(b).predict(X), dtype=np.float64).reshape(X.shape[0], -1)
            for name, b in candidates}
    assert not np.array_equal(outs["act_p9999"], outs["minmax"])  # the variants are different models
    chosen, entry = choose_calibration(candidates, X, outs["act_p9999"])
    assert entry["chosen"] == "act_p9999" and chosen == dict(candidates)["act_p9999"]
    assert entry["rms_std"]["act_p9999"] == 0.0
    assert set(entry["rms_std"]) == {*CANDIDATES, WIDE} and entry["rows"] == X.shape[0]


def test_the_wide_conversion_is_closer_to_the_float_network_than_every_int8_variant(
    models: TinyModels, candidates: list[tuple[str, bytes]]
) -> None:
    """On held-out spectra, 16-bit activations and fine-tuned int8 weights come several times closer to the float
    network than any choice of int8 ranges."""
    X = models.X_pre_test
    ref = models.keras_model.predict(X[..., None], verbose=0).astype(np.float64)
    rms = {name: float(np.sqrt(np.mean((np.asarray(ModelRuntime(b).predict(X), dtype=np.float64).reshape(ref.shape)
                                        - ref) ** 2))) for name, b in candidates}
    assert rms[WIDE] < min(rms[name] for name in CANDIDATES) / 3


def test_choice_takes_the_wide_conversion_only_where_the_int8_gap_is_a_visible_share_of_the_error(
    models: TinyModels, candidates: list[tuple[str, bytes]]
) -> None:
    X = models.X_pre_test
    ref = models.keras_model.predict(X[..., None], verbose=0).astype(np.float64)
    _, entry = choose_calibration(candidates, X, ref)  # no error to compare with: never the wide conversion
    assert entry["chosen"] in CANDIDATES and entry["gap_to_error"] is None
    int8_rms = entry["rms_std_per_target"][entry["int8_chosen"]][0]
    assert entry["chosen"] == entry["int8_chosen"]
    # the int8 gap is 1/4 of the error (in units: y_scale 2): the wide conversion is taken
    chosen, entry = choose_calibration(candidates, X, ref, y_scale=[2.0], cnn_error=[8 * int8_rms],
                                       error_source="cnn_cv_rmse")
    assert entry["chosen"] == WIDE and chosen == dict(candidates)[WIDE]
    assert entry["gap_to_error"] == [pytest.approx(0.25)] and entry["max_gap"] == MAX_GAP
    assert entry["error"] == [pytest.approx(8 * int8_rms)] and entry["error_source"] == "cnn_cv_rmse"
    # the same gap below MAX_GAP of the error: the int8 model stays
    _, entry = choose_calibration(candidates, X, ref, y_scale=[2.0], cnn_error=[2 * int8_rms / (0.9 * MAX_GAP)])
    assert entry["chosen"] == entry["int8_chosen"] != WIDE
    assert entry["gap_to_error"] == [pytest.approx(0.9 * MAX_GAP)]


def test_a_classifier_whose_int8_model_changes_classes_gets_the_wide_conversion_and_one_that_does_not_stays_int8(
    models: TinyModels,
) -> None:
    """The tiny classifier's probabilities lie near its boundary (a margin of 0.01 for half the rows), where the int8
    model's coarser probabilities change the class (the mayonnaise newcomer's CNN lost 2 of 42 test spectra so): the
    16-bit-activation conversion changes fewer and is chosen. Rows with a clear margin change none: int8 stays."""
    cls = models.class_keras_model
    P = np.ascontiguousarray(models.X_pre_train, dtype=np.float32)
    prob = cls.predict(P[..., None], verbose=0)
    cands = convert_int8_candidates(cls, P[:120], P, subprocess=False, seed=SEED)
    assert cands[-1][0] == WIDE

    chosen, entry = choose_class_calibration(cands, P, prob, roles=("train",))
    flips = entry["flips"]
    assert flips[entry["int8_chosen"]] > 0 and flips[WIDE] < flips[entry["int8_chosen"]]
    assert entry["chosen"] == WIDE and chosen == dict(cands)[WIDE] and entry["int16x8_built"]
    assert entry["rows"] == P.shape[0] and set(entry["rms_prob"]) == set(flips)
    wide = np.asarray(ModelRuntime(chosen).predict(P)).reshape(P.shape[0], -1)  # the counts are the edge runtime's
    assert flips[WIDE] == int(np.count_nonzero(np.argmax(wide, axis=1) != np.argmax(prob, axis=1)))

    sure = np.abs(prob[:, 0] - prob[:, 1]) > 0.02
    assert np.count_nonzero(sure) >= 20
    chosen, entry = choose_class_calibration(cands, P[sure], prob[sure])
    assert entry["chosen"] in CANDIDATES and entry["flips"][entry["chosen"]] == 0
    assert chosen == dict(cands)[entry["chosen"]]


def test_choice_keeps_the_plain_conversion_on_a_near_tie(
    models: TinyModels, candidates: list[tuple[str, bytes]]
) -> None:
    X = models.X_pre_test
    plain = np.asarray(ModelRuntime(candidates[0][1]).predict(X), dtype=np.float64).reshape(X.shape[0], -1)
    other = np.asarray(ModelRuntime(candidates[-1][1]).predict(X), dtype=np.float64).reshape(X.shape[0], -1)
    # a reference slightly nearer the variant than the plain model, but by less than MIN_GAIN
    w = 0.5 + MIN_GAIN / 8
    _, entry = choose_calibration([candidates[0], candidates[-1]], X, (1 - w) * plain + w * other)
    rms = entry["rms_std"]
    assert rms[candidates[-1][0]] < rms["minmax"] < rms[candidates[-1][0]] / (1 - MIN_GAIN)
    assert entry["chosen"] == "minmax"


@pytest.mark.slow
def test_child_process_candidates_match_in_process(
    models: TinyModels, candidates: list[tuple[str, bytes]]
) -> None:
    child = convert_int8_candidates(models.keras_model, models.X_pre_train[:120], models.X_pre_train,
                                    subprocess=True, seed=SEED)
    assert [name for name, _ in child] == [name for name, _ in candidates]
    for (name, a), (_, b) in zip(child, candidates):
        ra, rb = ModelRuntime(a), ModelRuntime(b)
        assert ra.input_quantization == rb.input_quantization, name
        diff = np.abs(ra.predict(models.X_pre_test) - rb.predict(models.X_pre_test))
        assert float(diff.max()) <= (ra.output_quantization[0] if name != WIDE else 1e-6), name


def test_an_elu_network_in_the_child_process_says_why_it_has_no_int16x8_and_the_choice_records_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The Cui & Fearn recipe (ELU, docs/training.md) has no 16-bit kernels: the conversion child's reason must
    reach the fit's log (the child runs as ``__main__``, outside the ``trainer`` loggers it forwarded), and a gap
    that would have called for the wide conversion is logged and recorded, not silently passed over."""
    import keras

    rng = np.random.default_rng(SEED)
    inp = keras.Input((32,))
    x = keras.layers.Reshape((32, 1))(inp)
    x = keras.layers.Conv1D(1, 9, activation="elu")(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(1)(keras.layers.Dense(8, activation="elu")(x))
    net = keras.Model(inp, out)
    X = rng.normal(size=(60, 32)).astype(np.float32)
    with caplog.at_level("INFO", logger="trainer"):
        got = convert_int8_candidates(net, X, X, subprocess=True, seed=SEED, headroom=0.25)
    assert tuple(name for name, _ in got) == CANDIDATES  # no int16x8 for ELU
    # the child applies the headroom as this process does (the fit's default, [quantize] headroom)
    here = convert_int8_candidates(net, X, X, subprocess=False, seed=SEED, int16x8=False, headroom=0.25)
    for (name, a), (_, b) in zip(got, here):
        assert ModelRuntime(a).output_quantization == ModelRuntime(b).output_quantization, name
    assert any("16-bit-activation conversion failed" in r.getMessage() and "'ELU'" in r.getMessage()
               and "int16x8 left out" in r.getMessage() for r in caplog.records)
    ref = net.predict(X, verbose=0).astype(np.float64)
    caplog.clear()
    with caplog.at_level("WARNING", logger="trainer.pipeline.int8"):
        _, entry = choose_calibration(got, X, ref, y_scale=[1.0], cnn_error=[1e-6])
    assert entry["chosen"] == entry["int8_chosen"] and entry["int16x8_built"] is False
    assert max(entry["gap_to_error"]) > MAX_GAP
    assert any("no int16x8 conversion was built" in r.getMessage() for r in caplog.records)


def test_an_almost_always_zero_activation_keeps_its_min_max_range() -> None:
    """A ReLU unit alive on fewer than 0.01 % of its values has percentiles of 0: clipping there would silence it
    (and give the next layer a requantisation scale XNNPACK refuses), so the tensor keeps its min/max range."""
    from trainer.quant_ranges import _clipped

    sparse = np.zeros(20_000)
    sparse[7] = 3.0
    assert _clipped(sparse, (0.0, 3.0)) == (0.0, 3.0)
    dense = np.random.default_rng(SEED).exponential(1.0, 20_000)
    dense[7] = 50.0
    lo, hi = _clipped(dense, (0.0, 50.0))
    assert lo == 0.0 and 5.0 < hi < 50.0  # an outlier no longer sets the step


def test_a_variant_the_edge_runtime_cannot_run_is_left_out(
    models: TinyModels, rows: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    """A hidden tensor given an almost-zero range leaves the next layer a requantisation scale above XNNPACK's
    limit: that variant is left out of the choice, named with the reason; with no int8 variant left, a clear error."""
    from edge.errors import RuntimeLoadError
    from trainer.errors import TrainerError

    cal = calibrate(models.keras_model, rows)
    ranges, inputs, outputs = tensor_ranges(cal)
    hidden = [i for i, r in ranges.items() if r != ranges[inputs[0]] and i not in outputs]
    broken = None
    for i in hidden:  # the first hidden tensor whose silencing the runtime refuses
        candidate = quantize_calibrated(with_ranges(cal, {i: (0.0, 0.0)}))
        try:
            ModelRuntime(candidate).predict(models.X_pre_test[:2])
        except (RuntimeLoadError, RuntimeError):
            broken = candidate
            break
    assert broken is not None, "no silenced tensor made a model the runtime refuses"
    plain = quantize_calibrated(cal)
    X = models.X_pre_test
    ref = np.asarray(ModelRuntime(plain).predict(X), dtype=np.float64).reshape(X.shape[0], -1)
    with caplog.at_level("WARNING", logger="trainer.pipeline.int8"):
        chosen, entry = choose_calibration([("minmax", plain), ("act_p9999", broken)], X, ref)
    assert chosen == plain and entry["chosen"] == "minmax"
    assert set(entry["rms_std"]) == {"minmax"} and "XNNPACK" in entry["refused"]["act_p9999"]
    assert any("act_p9999 left out" in r.getMessage() for r in caplog.records)
    # the plain conversion refused, the next variant serves as the baseline
    chosen, entry = choose_calibration([("minmax", broken), ("minmax_all", plain)], X, ref)
    assert entry["chosen"] == "minmax_all" and set(entry["refused"]) == {"minmax"}
    with pytest.raises(TrainerError, match="cannot run any int8 conversion of the CNN.*minmax: .*XNNPACK"):
        choose_calibration([("minmax", broken)], X, ref)


def test_headroom_widens_every_int8_range_but_the_input_s(
    models: TinyModels, candidates: list[tuple[str, bytes]]
) -> None:
    """``[quantize] headroom = 0.5``: each variant's output step is 1.5x its step without headroom, its input
    quantisation is unchanged, and the choice among the variants is recorded with it."""
    roomy = convert_int8_candidates(models.keras_model, models.X_pre_train[:120], models.X_pre_train,
                                    subprocess=False, seed=SEED, headroom=0.5)
    assert tuple(name for name, _ in roomy) == (*CANDIDATES, WIDE)
    plain = dict(candidates)
    for name, model_bytes in roomy[:-1]:
        got, before = ModelRuntime(model_bytes), ModelRuntime(plain[name])
        assert got.input_quantization == before.input_quantization, name
        assert got.output_quantization[0] == pytest.approx(1.5 * before.output_quantization[0], rel=SCALE_RTOL), name
        assert abs(got.output_quantization[1] - before.output_quantization[1]) <= 1, name  # the zero point stays
        # every activation tensor, not only the output: the input's re-shapes keep its step, the rest get 1.5x,
        # and the graph is the same (no requantisation added)
        new, old = _activation_scales(model_bytes), _activation_scales(plain[name])
        assert new.keys() == old.keys() and len(new) > 4, name
        input_scale = got.input_quantization[0]
        for tensor, scale in new.items():
            want = old[tensor] * (1.0 if old[tensor] == pytest.approx(input_scale, rel=1e-6) else 1.5)
            assert scale == pytest.approx(want, rel=SCALE_RTOL), (name, tensor)
    # the 16-bit conversion too: its float output dequantises a 16-bit tensor whose step is 1.5x
    wide_scale, before_scale = output_scale(roomy[-1][1]), output_scale(plain[WIDE])
    assert wide_scale is not None and before_scale is not None
    assert wide_scale == pytest.approx(1.5 * before_scale, rel=SCALE_RTOL)
    with pytest.raises(QuantizeError, match="finite headroom >= 0"):
        convert_int8_candidates(models.keras_model, models.X_pre_train[:120], models.X_pre_train,
                                subprocess=False, seed=SEED, int16x8=False, headroom=-0.1)


def test_headroom_keeps_an_output_beyond_the_calibration_spectra_from_clipping_at_their_extreme(
    models: TinyModels,
) -> None:
    """Calibrated on the spectra whose float outputs are the lowest 70 %, the int8 and 16x8 models without headroom
    clip the others at the calibration maximum; with headroom they follow the float network beyond it (the wheat
    kernels of another location, docs/training.md)."""
    X = np.asarray(models.X_pre_train, dtype=np.float32)
    ref = models.keras_model.predict(X[:, :, None], verbose=0).astype(np.float64).reshape(X.shape[0], -1)[:, 0]
    inside = ref <= np.quantile(ref, 0.7)
    top = float(ref[inside].max())
    span = top - float(ref[inside].min())
    beyond = (ref > top + 0.05 * span) & (ref < top + 0.3 * span)
    assert beyond.sum() >= 5, "the test needs spectra whose outputs lie beyond the calibration maximum"
    rows = X[inside]
    err = {}
    for headroom in (0.0, 0.5):
        minmax = dict(convert_int8_candidates(models.keras_model, rows, rows, subprocess=False, seed=SEED,
                                              int16x8=False, headroom=headroom))["minmax"]
        wide = int16x8_model(models.keras_model, rows[:, :, None], headroom)
        for name, model_bytes in (("int8", minmax), (WIDE, wide)):
            out = np.asarray(ModelRuntime(model_bytes).predict(X[beyond]), dtype=np.float64).reshape(-1)
            err[name, headroom] = float(np.sqrt(np.mean((out - ref[beyond]) ** 2)))
            if headroom == 0.0:  # clipped near the calibration maximum, short of the float outputs
                assert float(out.max()) < top + 0.05 * span, name
    assert err["int8", 0.5] < 0.5 * err["int8", 0.0], err
    assert err[WIDE, 0.5] < 0.5 * err[WIDE, 0.0], err


def test_the_16x8_quantiser_fed_no_rows_quantises_with_the_statistics_the_flatbuffer_carries(
    models: TinyModels, rows: np.ndarray
) -> None:
    """The headroom's 16-bit route (``_quantize_16x8``): unedited, it predicts exactly as the converter's own
    16x8 conversion does."""
    import tensorflow as tf

    from trainer.quant_ranges import _calibrated_converter, _quantize_16x8

    converter = _calibrated_converter(models.keras_model, rows,
                                      tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8)
    converter._experimental_calibrate_only = True
    again = ModelRuntime(_quantize_16x8(bytes(converter.convert())))
    direct = ModelRuntime(int16x8_model(models.keras_model, rows))
    assert again.input_dtype == np.float32 and again.output_dtype == np.float32
    np.testing.assert_array_equal(again.predict(models.X_pre_test), direct.predict(models.X_pre_test))


def _activation_scales(model_bytes: bytes) -> dict[str, float]:
    """Tensor name -> scale of every per-tensor-quantised tensor that is not a constant (the activations)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    out = {}
    for t in model.subgraphs[0].tensors:
        q, data = t.quantization, model.buffers[t.buffer].data
        if q is not None and q.scale is not None and len(q.scale) == 1 and (data is None or len(data) == 0):
            out[t.name.decode() if isinstance(t.name, bytes) else str(t.name)] = float(q.scale[0])
    return out


def test_with_headroom_scales_about_zero_keeps_the_input_and_unites_a_concatenation() -> None:
    graph = Structure(input_like=(0, 1), concats=((5, (1, 4)),))
    ranges = {0: (-2.0, 3.0), 1: (-2.0, 3.0), 2: (0.5, 1.0), 3: (-1.0, 0.0), 4: (0.0, 4.0), 5: (-2.0, 4.0)}
    assert with_headroom(ranges, graph, 0.0) == ranges
    got = with_headroom(ranges, graph, 0.5)
    assert got[0] == got[1] == (-2.0, 3.0)  # the input and its re-shape keep their range
    assert got[2] == (0.0, 1.5)  # widened to include 0, then scaled about 0
    assert got[3] == (-1.5, 0.0) and got[4] == (0.0, 6.0)
    assert got[5] == (-2.0, 6.0)  # a concatenation: the union of its operands' ranges, not its own scaled
    assert ranges[2] == (0.5, 1.0)  # the argument is not modified
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite headroom >= 0"):
            with_headroom(ranges, graph, bad)


def test_the_structure_finds_the_input_by_the_graph_not_by_an_equal_range() -> None:
    """A linear path concatenates the input with smaller hidden features: the concatenation's range equals the
    input's, yet it is a concatenation (its range the union of its operands'), not the input."""
    import keras

    rng = np.random.default_rng(SEED)
    inp = keras.Input((24,))
    x = keras.layers.Reshape((24, 1))(inp)
    x = keras.layers.Flatten()(keras.layers.Conv1D(2, 5, activation="relu")(x))
    h = keras.layers.Dense(4, activation="relu")(x)
    out = keras.layers.Dense(1)(keras.layers.Concatenate()([h, inp]))
    net = keras.Model(inp, out)
    X = (3.0 * rng.normal(size=(40, 24))).astype(np.float32)
    cal = calibrate(net, X)
    ranges, inputs, _ = tensor_ranges(cal)
    graph = structure(cal)
    assert graph.input_like[0] == inputs[0] and len(graph.concats) == 1
    concat, operands = graph.concats[0]
    assert concat not in graph.input_like and inputs[0] in operands
    roomy = with_headroom(ranges, graph, 0.25)
    assert roomy[concat] == (min(roomy[i][0] for i in operands), max(roomy[i][1] for i in operands))

"""Shadow mode's plain values (edge/shadow.py): the comparison against numpy, reference values by seq, the promotion
rule, the commands' arguments; and ShadowMode's refusals (edge/daemon/shadow.py) with the committed bundles."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.commands import CommandParser, make_command
from edge.config import CommandsConfig
from edge.errors import CommandError
from edge.shadow import (
    RECENT_MAX,
    Judged,
    LoadChallengerArgs,
    NoArgs,
    PromoteArgs,
    PromotionRule,
    ReferenceValueArgs,
    ShadowComparison,
)
from tests.support.trained import DEMO_CNN, DEMO_V1, TABLETS_BUNDLE, TABLETS_PUBLIC_KEY, committed

STAT_RTOL = 1e-12


def _judged(seq: int, values: Any, *, lower: Any = None, upper: Any = None, alarm: bool = False,
            flagged: bool = False) -> Judged:
    tup = None if values is None else tuple(float(v) for v in values)
    return Judged(seq, tup, None if lower is None else tuple(lower), None if upper is None else tuple(upper),
                  flagged or alarm, alarm)


def test_the_comparison_is_numpy_on_the_targets_both_predict_in_the_same_unit() -> None:
    """The challenger's outputs come in another order and one target has another unit: targets are matched by name,
    the one in another unit and the one the challenger lacks are not compared."""
    rng = np.random.default_rng(0)
    n = 200
    s = rng.normal(10, 2, (n, 3))
    c = s[:, [1, 0]] + rng.normal(0, 0.5, (n, 2))  # challenger outputs: b, a
    lo, hi = s - 1.0, s + 1.0
    s_alarm, c_alarm = rng.random(n) < 0.1, rng.random(n) < 0.2
    c_rejected = rng.random(n) < 0.05
    cmp = ShadowComparison(("a", "b", "c"), ("%", "mg", "%"), ("b", "a"), ("g", "%"))
    assert cmp.targets == ("a",)
    for i in range(n):
        cmp.observe(_judged(i, s[i], lower=lo[i], upper=hi[i], alarm=bool(s_alarm[i])),
                    _judged(i, None if c_rejected[i] else c[i], alarm=bool(c_alarm[i])))
    got = cmp.summary()
    ok = ~c_rejected
    d = c[ok, 1] - s[ok, 0]
    assert got["spectra"] == n and got["compared"] == int(ok.sum())
    assert got["serving"] == {"predictions": n, "rejected": 0, "alarms": int(s_alarm.sum()),
                              "alarm_rate": s_alarm.sum() / n, "flagged": int(s_alarm.sum())}
    assert got["challenger"]["rejected"] == int(c_rejected.sum())
    assert got["challenger"]["alarms"] == int((c_alarm & ok).sum())
    a = got["targets"]["a"]
    assert set(got["targets"]) == {"a"} and a["unit"] == "%"
    np.testing.assert_allclose(a["mean_abs_diff"], np.abs(d).mean(), rtol=STAT_RTOL)
    assert a["max_abs_diff"] == np.abs(d).max()
    np.testing.assert_allclose(a["mean_diff"], d.mean(), rtol=STAT_RTOL)
    inside = (lo[ok, 0] <= c[ok, 1]) & (c[ok, 1] <= hi[ok, 0])
    np.testing.assert_allclose(a["within_serving_interval"], inside.mean(), rtol=STAT_RTOL)
    assert a["references"] == 0 and a["rmsep_serving"] is None and a["rmsep_challenger"] is None


def test_reference_values_join_by_seq_and_make_the_rmsep_of_both() -> None:
    cmp = ShadowComparison(("a", "b"), ("%", "%"), ("a", "b"), ("%", "%"))
    cmp.observe(_judged(1, (10.0, 1.0)), _judged(1, (11.0, 2.0)))
    cmp.observe(_judged(2, (20.0, 2.0)), _judged(2, (18.0, 2.5)))
    assert cmp.reference(1, {"a": 10.5}) == {"a": {"reference": 10.5, "serving": 10.0, "challenger": 11.0}}
    cmp.reference(2, {"a": 20.0, "b": 2.0})
    a, b = cmp.summary()["targets"]["a"], cmp.summary()["targets"]["b"]
    assert a["references"] == 2 and b["references"] == 1
    np.testing.assert_allclose(a["rmsep_serving"], np.sqrt((0.5 ** 2 + 0.0) / 2), rtol=STAT_RTOL)
    np.testing.assert_allclose(a["rmsep_challenger"], np.sqrt((0.5 ** 2 + 2.0 ** 2) / 2), rtol=STAT_RTOL)
    assert b["rmsep_serving"] == 0.0 and b["rmsep_challenger"] == 0.5
    with pytest.raises(ValueError, match=r"held: 1\.\.2\), got 3"):
        cmp.reference(3, {"a": 1.0})
    with pytest.raises(ValueError, match="compared targets \\(a, b\\), got z"):
        cmp.reference(1, {"z": 1.0})
    # a reference that comes with its spectrum, before the challenger judged it, waits for it
    assert cmp.reference(3, {"a": 30.0}, pending_ok=True) == {}
    cmp.observe(_judged(3, (31.0, 3.0)), _judged(3, (29.0, 3.0)))
    assert cmp.summary()["targets"]["a"]["references"] == 3
    # a device that restarted its sequence: the older seqs name other spectra now
    cmp.observe(_judged(0, (1.0, 1.0)), _judged(0, (1.0, 1.0)))
    with pytest.raises(ValueError, match="held: 0..0"):
        cmp.reference(2, {"a": 20.0})


def test_only_the_last_spectra_are_held_for_references() -> None:
    cmp = ShadowComparison(("a",), ("%",), ("a",), ("%",))
    for i in range(RECENT_MAX + 10):
        cmp.observe(_judged(i, (1.0,)), _judged(i, (2.0,)))
    with pytest.raises(ValueError, match=f"among the last {RECENT_MAX}"):
        cmp.reference(9, {"a": 1.0})
    assert cmp.reference(10, {"a": 1.0})["a"]["challenger"] == 2.0


def _summary(compared: int, *, alarm_rate: float = 0.0, diff: float = 0.1, within: float = 1.0, refs: int = 0,
             rmsep: tuple[float, float] = (1.0, 1.0)) -> dict[str, Any]:
    target = {"mean_abs_diff": diff, "within_serving_interval": within, "references": refs,
              "rmsep_serving": rmsep[0] if refs else None, "rmsep_challenger": rmsep[1] if refs else None}
    return {"compared": compared, "challenger": {"alarm_rate": alarm_rate}, "targets": {"a": target}}


def test_the_rule_waits_for_min_spectra_then_needs_every_stated_condition() -> None:
    rule = PromotionRule.from_args({"min_spectra": 100, "max_alarm_rate": 0.05, "max_mean_abs_diff": {"a": 0.5},
                                    "min_within_serving_interval": 0.9, "max_rmsep_ratio": 1.1,
                                    "min_references": 3}, where="promote")
    assert rule.verdict(_summary(99)) == (False, "waiting: 99 of 100 spectra compared")
    due, why = rule.verdict(_summary(100, refs=2))
    assert not due and why.startswith("waiting: no target has 3 reference value(s) yet")
    assert rule.verdict(_summary(100, refs=3))[0]
    for bad, text in ((dict(alarm_rate=0.06), "challenger alarm rate 0.06 > 0.05"),
                      (dict(diff=0.6), "a mean |diff| 0.6 > 0.5"),
                      (dict(within=0.8), "a within the serving interval 0.8 < 0.9"),
                      (dict(rmsep=(1.0, 1.2)), "a RMSEP 1.2 > 1.1 x 1")):
        due, why = rule.verdict(_summary(100, refs=3, **bad))  # type: ignore[arg-type]  # **bad of mixed types: the summary's keyword arguments
        assert not due and why == f"not met: {text}", why
    assert PromotionRule(min_spectra=5).verdict(_summary(5)) == (True, "met: 5 spectra compared (min 5)")
    assert rule.to_dict() == {"min_spectra": 100, "max_alarm_rate": 0.05, "max_mean_abs_diff": {"a": 0.5},
                              "min_within_serving_interval": 0.9, "max_rmsep_ratio": 1.1, "min_references": 3}
    with pytest.raises(ValueError, match="expected targets both bundles predict \\(b\\), got a"):
        rule.check_targets(("b",))


@pytest.mark.parametrize(("rule", "error"), [
    ({}, "promote.min_spectra: required"),
    ({"min_spectra": 0}, "promote.min_spectra: expected an integer in 1..10000000, got 0"),
    ({"min_spectra": 5, "max_alarm_rate": 1.5}, "promote.max_alarm_rate: expected a number in 0..1, got 1.5"),
    ({"min_spectra": 5, "max_mean_abs_diff": {}}, "promote.max_mean_abs_diff: expected an object"),
    ({"min_spectra": 5, "max_mean_abs_diff": {"a": -1}}, "promote.max_mean_abs_diff.a: expected a number in 0..inf"),
    ({"min_spectra": 5, "maybe": 1}, "promote.maybe: unknown field"),
    ([5], "promote: expected an object, got list"),
])
def test_a_bad_rule_is_refused_naming_the_field(rule: Any, error: str) -> None:
    with pytest.raises(CommandError, match=error.replace("(", r"\(").replace(")", r"\)").replace("|", r"\|")):
        PromotionRule.from_args(rule, where="promote")


def _parse(tmp_path: Path, name: str, args: dict[str, Any], allowed: Path) -> Any:
    parser = CommandParser(CommandsConfig(require_auth=False, allowed_dirs=(allowed,)), device_id="nir-01")
    return parser.parse(name, json.dumps(make_command(name, args, device_id="nir-01")).encode()).args


def test_the_shadow_commands_parse_to_typed_args(tmp_path: Path) -> None:
    bundle = tmp_path / "new.spectrolite"
    bundle.write_bytes(b"x")
    got = _parse(tmp_path, "load_challenger", {"path": "new.spectrolite", "promote": {"min_spectra": 7}}, tmp_path)
    assert got == LoadChallengerArgs(bundle.resolve(), PromotionRule(min_spectra=7))
    assert _parse(tmp_path, "load_challenger", {"path": str(bundle)}, tmp_path).promote is None
    assert _parse(tmp_path, "promote_challenger", {}, tmp_path) == PromoteArgs()
    assert _parse(tmp_path, "drop_challenger", {}, tmp_path) == NoArgs()
    assert _parse(tmp_path, "reference_value", {"seq": 4, "values": {"a": 1.5}}, tmp_path) == ReferenceValueArgs(
        4, {"a": 1.5}, None)
    for name, args, error in (
        ("load_challenger", {}, "load_challenger.args.path: required"),
        ("load_challenger", {"path": "../x.spectrolite"}, "load_challenger.args.path: expected a path inside"),
        ("load_challenger", {"path": "new.spectrolite", "promote": {"min_spectra": 1, "x": 2}},
         "load_challenger.args.promote.x: unknown field"),
        ("promote_challenger", {"now": True}, "promote_challenger.args.now: unknown argument"),
        ("reference_value", {"values": {"a": 1}}, "reference_value.args.seq: required"),
        ("reference_value", {"seq": -1, "values": {"a": 1}}, "reference_value.args.seq: expected an integer"),
        ("reference_value", {"seq": 1, "values": {}}, "reference_value.args.values: expected an object"),
        ("reference_value", {"seq": 1, "values": {"a": "1"}}, "reference_value.args.values.a: expected a number"),
        ("reference_value", {"seq": 1, "values": {"a": 2 ** 1024}}, "reference_value.args.values.a: expected a number"),
        ("load_challenger", {"path": "new.spectrolite", "promote": {"min_spectra": 1, "max_rmsep_ratio": 2 ** 1024}},
         "load_challenger.args.promote.max_rmsep_ratio: expected a number in 0..1e"),
        ("reference_value", {"seq": 1, "values": {"a": 1}, "device_boot_id": 0},
         "reference_value.args.device_boot_id: expected an integer in 1..4294967295, got 0"),
    ):
        with pytest.raises(CommandError, match=error.replace(".", r"\.")):
            _parse(tmp_path, name, args, tmp_path)


# ------------------------------------------------------------------------------------------------ ShadowMode
class _Outbound:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, dict[str, Any], str | None]] = []

    def emit(self, kind: Any, message: dict[str, Any], command: str | None = None) -> None:
        self.sent.append((kind, message, command))

    def begin_batch(self) -> None:
        pass

    def flush_batch(self) -> None:
        pass


class _Cmd:
    def __init__(self, args: Any, request_id: str = "r-1") -> None:
        self.args, self.request_id, self.authenticated = args, request_id, True


def _shadow(rollback_problem: Any = lambda b: None) -> tuple[Any, _Outbound, list[Any], Any]:
    from edge.bundle import load_bundle
    from edge.daemon.shadow import ShadowMode
    from edge.inference import InferenceEngine
    from edge.metrics import Counters
    from edge.references import ReferencePolicy

    serving = InferenceEngine(load_bundle(committed(DEMO_V1)))
    out, errors, counters = _Outbound(), [], Counters()
    shadow = ShadowMode(
        load_bundle=lambda p: load_bundle(p, public_key=TABLETS_PUBLIC_KEY if p == TABLETS_BUNDLE else None),
        reference_policy=ReferencePolicy(), check_fit=lambda b, e: None, rollback_problem=rollback_problem,
        serving=lambda: serving, reload=lambda *a, **k: True, request_promotion=lambda *a: None,
        outbound=out, publish_status=lambda: None, device_id="sim-01",  # type: ignore[arg-type]  # stand-ins for the daemon's stages
        counters=counters, audit=lambda e, d: None, respond_error=lambda *a: errors.append(a), clock=time.time)
    return shadow, out, errors, counters


def test_a_challenger_anti_rollback_would_refuse_to_promote_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    """The committed signed tablets bundle, with a newer signed version of its model marked as served here."""
    from edge.bundle import load_bundle
    from edge.rollback import STATE_FORMAT, RollbackGuard

    bundle = load_bundle(committed(TABLETS_BUNDLE), public_key=TABLETS_PUBLIC_KEY)
    marks = tmp_path / "marks.json"
    marks.write_text(json.dumps({"format": STATE_FORMAT, "marks": {bundle.model_id: {
        "model_version": "999.0.0", "created_utc": "2030-01-01T00:00:00Z"}}}), encoding="utf-8")
    shadow, out, errors, counters = _shadow(RollbackGuard(marks).problem)
    shadow.execute("load_challenger", _Cmd(LoadChallengerArgs(TABLETS_BUNDLE, None)))
    assert len(errors) == 1 and errors[0][0] == "load_challenger", errors
    assert "nothing changed" in errors[0][2] and "could never be promoted: rollback refused" in errors[0][2]
    assert not shadow.active and shadow.status() is None and shadow.metrics() is None and out.sent == []
    assert counters.get("challenger_refused") == 1


def test_one_challenger_at_a_time_and_none_that_is_the_bundle_in_service() -> None:
    shadow, out, errors, counters = _shadow()
    shadow.execute("load_challenger", _Cmd(LoadChallengerArgs(committed(DEMO_V1), None), "same"))
    assert "expected another bundle than the one in service" in errors[-1][2]
    shadow.execute("load_challenger", _Cmd(LoadChallengerArgs(committed(DEMO_CNN), None), "one"))
    assert shadow.active and shadow.status()["state"] == "shadowing" and out.sent[-1][1]["ok"] is True
    shadow.execute("load_challenger", _Cmd(LoadChallengerArgs(committed(DEMO_CNN), None), "two"))
    assert "expected no challenger running, got synthetic-demo 1.2.0" in errors[-1][2]
    assert shadow.status()["request_id"] == "one" and counters.get("challenger_refused") == 2
    shadow.execute("drop_challenger", _Cmd(NoArgs(), "drop"))
    assert not shadow.active and shadow.status()["state"] == "dropped"
    assert out.sent[-1][1]["result"]["comparison"]["compared"] == 0


def _json_values() -> Any:
    from hypothesis import strategies as st

    leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2 ** 1024), st.floats(),
                     st.text(max_size=12))  # ints beyond float range are valid JSON
    return st.recursive(leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                        max_leaves=10)


def test_arbitrary_shadow_arguments_only_raise_command_error(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Whatever JSON a command's ``args`` hold, the parser answers with typed args or a CommandError, never another
    exception (a bad argument changes nothing)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    allowed = tmp_path_factory.mktemp("bundles")
    (allowed / "b.spectrolite").write_bytes(b"x")
    parser = CommandParser(CommandsConfig(require_auth=False, allowed_dirs=(allowed,)), device_id="nir-01")
    values = _json_values()
    keys = st.sampled_from(["path", "promote", "seq", "values", "device_boot_id", "min_spectra", "x"])
    args = st.one_of(
        st.dictionaries(keys, values, max_size=4),
        st.fixed_dictionaries({"path": st.just("b.spectrolite"), "promote": st.one_of(
            values, st.fixed_dictionaries({"min_spectra": st.integers(1, 9)}, optional={
                k: values for k in [*PromotionRule.KEYS[1:], "x"]}))}),
        st.fixed_dictionaries({"seq": st.one_of(st.integers(0, 9), values), "values": st.one_of(
            values, st.dictionaries(st.text(max_size=140), values, min_size=1, max_size=3))}),
    )

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(["load_challenger", "promote_challenger", "drop_challenger", "reference_value"]), args)
    def check(name: str, body_args: dict[str, Any]) -> None:
        payload = json.dumps(make_command(name, body_args, device_id="nir-01")).encode()
        try:
            parser.parse(name, payload)
        except CommandError:
            pass

    check()


def test_a_serving_bundle_reloaded_meanwhile_starts_the_comparison_afresh(tmp_path: Path,
                                                                          demo_bundles: Any) -> None:
    """In process (real simulator on a pty, LiteRT, a recording link): while a challenger shadows 1.0.0, a reload of
    1.1.0 makes the comparison start over against 1.1.0, counting every spectrum 1.1.0 judged from its first one."""
    from edge.bundle import load_bundle
    from edge.commands import CommandName, ReloadBundleArgs, RemoteCommand
    from edge.daemon import Daemon
    from firmware_bridge.transport import SerialTransport
    from tests.support.daemon import RecordingLink, edge_config, start_sim_thread, wait_for

    sim = start_sim_thread(tmp_path, count=0, rate_hz=100.0)
    link = RecordingLink()
    daemon = Daemon(edge_config(tmp_path, port_url=sim.address, bundle_path=demo_bundles.v1),
                    load_bundle(demo_bundles.v1), SerialTransport(sim.address, read_timeout_s=0.05), link)
    daemon.start()
    try:
        wait_for(lambda: len(link.of_kind("prediction")) >= 5, "first predictions")
        daemon.submit_command(RemoteCommand(CommandName.LOAD_CHALLENGER, LoadChallengerArgs(DEMO_CNN, None), "c-1",
                                            True, None))
        wait_for(lambda: len(link.of_kind("challenger_prediction")) >= 20, "challenger predictions")
        daemon.submit_command(RemoteCommand(CommandName.RELOAD_BUNDLE, ReloadBundleArgs(demo_bundles.v2), "r-1",
                                            True, None))
        wait_for(lambda: sum(m["serving_model"]["version"] == "1.1.0" for m in link.of_kind("challenger_prediction"))
                 >= 20, "challenger predictions beside 1.1.0")
    finally:
        daemon.stop()  # the inference thread runs the challenger on what it judged last, then ends
        sim.stop.set()
        sim.thread.join(timeout=10)
    metrics = daemon.metrics_payload(1.0)
    comparison = metrics["challenger"]
    assert comparison["serving_model"] == {"id": "synthetic-demo", "version": "1.1.0"}
    assert metrics["counters"]["challenger_comparison_resets"] == 1
    beside_v2 = [m["seq"] for m in link.of_kind("challenger_prediction") if m["serving_model"]["version"] == "1.1.0"]
    first_v2 = min(m["seq"] for m in link.of_kind("prediction") if m["model"]["version"] == "1.1.0")
    assert min(beside_v2) == first_v2  # not one spectrum judged by 1.1.0 is left out of its comparison
    assert comparison["compared"] == len(beside_v2) == len(set(beside_v2))

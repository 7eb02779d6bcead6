"""Control samples (issue 16): the Shewhart / Western Electric verdict rules, the charts that measurements are armed
on, the ``[control]`` configuration and the ``measure_control`` command's arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.commands import CommandName, CommandParser, MeasureControlArgs, make_command
from edge.config import ControlStandardConfig, parse_config
from edge.control_samples import IN_CONTROL, OUT_OF_CONTROL, WARNING, ControlCharts, verdict_of
from edge.errors import CommandError, ConfigError
from edge.publish.messages import control_message, status_message
from edge.publish.schema import MessageError, encode


def v(z: float, recent: list[float] | None = None) -> str:
    return verdict_of(z, recent or [], warning_sigmas=2.0, action_sigmas=3.0)[0]


@pytest.mark.parametrize(("z", "verdict"), [
    (0.0, IN_CONTROL), (1.99, IN_CONTROL), (-2.0, IN_CONTROL), (2.01, WARNING), (-2.5, WARNING), (3.0, WARNING),
    (3.01, OUT_OF_CONTROL), (-7.0, OUT_OF_CONTROL)])
def test_shewhart_limits(z: float, verdict: str) -> None:
    assert v(z) == verdict


def test_western_electric_two_of_three_beyond_two_sigma_on_the_same_side() -> None:
    assert v(2.5, [2.2]) == OUT_OF_CONTROL
    assert v(2.5, [2.2, 0.0]) == OUT_OF_CONTROL  # 2 of the last 3
    assert v(-2.5, [-0.1, -2.1]) == OUT_OF_CONTROL
    assert v(2.5, [2.2, 0.0, 0.0]) == WARNING  # the earlier one is 3 measurements back
    assert v(2.5, [-2.2]) == WARNING  # opposite sides
    assert v(1.0, [2.2, 2.3]) == IN_CONTROL  # the rule judges a measurement beyond 2 sigma only
    assert verdict_of(2.5, [2.2], warning_sigmas=2.0, action_sigmas=3.0)[1].startswith("western_electric_2of3")


def std(name: str = "check-A", *, value: float = 200.0, sigma: float = 2.0) -> ControlStandardConfig:
    return ControlStandardConfig(name=name, target="assay_mg", value=value, sigma=sigma)


def test_charts_judge_only_armed_predictions_and_keep_each_standards_last_verdict() -> None:
    charts = ControlCharts([std(), std("check-B", value=100.0)], clock=lambda: 1000.0)
    assert charts.observe(("assay_mg",), (200.0,)) is None  # nothing armed
    charts.arm("check-A", 2, "r-1")
    charts.arm("check-B", 1)
    a1 = charts.observe(("water", "assay_mg"), (1.0, 203.0))
    assert a1 is not None and a1.name == "check-A" and a1.measured == 203.0 and a1.bias == 3.0
    assert a1.bias_sigmas == 1.5 and a1.verdict == IN_CONTROL and a1.request_id == "r-1"
    a2 = charts.observe(("water", "assay_mg"), (1.0, 207.0))
    assert a2 is not None and a2.verdict == OUT_OF_CONTROL
    b = charts.observe(("water", "assay_mg"), (1.0, 99.0))
    assert b is not None and b.name == "check-B" and b.verdict == IN_CONTROL and b.request_id is None
    assert charts.observe(("assay_mg",), (200.0,)) is None
    assert charts.summary() == {"check-A": {"verdict": OUT_OF_CONTROL, "last_time_unix_s": 1000.0, "bias": 7.0},
                                "check-B": {"verdict": IN_CONTROL, "last_time_unix_s": 1000.0, "bias": -1.0}}
    with pytest.raises(KeyError, match="got 'nope'"):
        charts.arm("nope", 1)


def test_an_armed_measurement_of_a_target_the_bundle_lost_is_counted_not_judged() -> None:
    counted: list[str] = []
    charts = ControlCharts([std()], clock=lambda: 0.0, count=counted.append)
    charts.arm("check-A", 1)
    assert charts.observe(("water",), (1.0,)) is None
    assert counted == ["control_skipped_missing_target"] and charts.pending() == 0 and charts.summary() == {}


def test_targets_are_checked_against_the_bundle() -> None:
    charts = ControlCharts([std()], clock=lambda: 0.0)
    charts.check_targets(["water", "assay_mg"])
    with pytest.raises(ConfigError, match="expected target to be one of the bundle's targets \\(water\\), got "
                                          "'assay_mg'"):
        charts.check_targets(["water"])


BASE = {"device": {"site": "plant-a", "line": "line-3", "device_id": "nir-01"}, "serial": {"port_url": "loop://"},
        "bundle": {"path": "b.spectrolite"}}


def test_control_config_parses_arrays_of_tables_and_refuses_bad_standards(tmp_path: Path) -> None:
    cfg = parse_config({**BASE, "control": {"standards": [
        {"name": "check-A", "target": "assay_mg", "value": 200, "sigma": 1.5},
        {"name": "check-B", "target": "water", "value": 2.0, "sigma": 0.1, "warning_sigmas": 1.5,
         "action_sigmas": 2.5}]}}, base_dir=tmp_path)
    a, b = cfg.control.standards
    assert (a.name, a.target, a.value, a.sigma, a.warning_sigmas, a.action_sigmas) == (
        "check-A", "assay_mg", 200.0, 1.5, 2.0, 3.0)
    assert (b.warning_sigmas, b.action_sigmas) == (1.5, 2.5)
    assert parse_config(BASE, base_dir=tmp_path).control.standards == ()

    def refused(standards: list[dict[str, object]], match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            parse_config({**BASE, "control": {"standards": standards}}, base_dir=tmp_path)

    ok = {"name": "check-A", "target": "assay_mg", "value": 200, "sigma": 1.5}
    refused([{**ok, "sigma": 0}], r"control.standards\[0\].sigma: expected a value > 0")
    refused([{k: x for k, x in ok.items() if k != "value"}], r"control.standards\[0\].value: required key missing")
    refused([{**ok, "name": "a/b"}], r"control.standards\[0\].name: expected 1-48 of")
    refused([{**ok, "extra": 1}], r"control.standards\[0\].extra: unknown key")
    refused([ok, ok], r"control.standards\[1\].name: expected a name not used by another standard")
    refused([{**ok, "action_sigmas": 2.0}], r"control.standards\[0\].action_sigmas: expected a value above")


def test_measure_control_arguments(tmp_path: Path) -> None:
    cfg = parse_config({**BASE, "commands": {"enabled": True, "require_auth": False}}, base_dir=tmp_path)
    parser = CommandParser(cfg.commands, device_id="nir-01")

    def parse(args: dict[str, object]) -> object:
        body = make_command("measure_control", args, device_id="nir-01")
        return parser.parse("measure_control", __import__("json").dumps(body).encode()).args

    assert parse({"name": "check-A"}) == MeasureControlArgs("check-A", 1)
    assert parse({"name": "check-A", "frames": 5}) == MeasureControlArgs("check-A", 5)
    assert CommandName("measure_control") is CommandName.MEASURE_CONTROL
    for bad, match in (({}, "name: expected"), ({"name": "a b"}, "name: expected"),
                       ({"name": "x", "frames": 0}, "frames: expected"), ({"name": "x", "n": 1}, "unknown argument")):
        with pytest.raises(CommandError, match=match):
            parse(bad)


def test_control_message_and_status_field_are_strict() -> None:
    msg = control_message(device_id="nir-01", standard="check-A", target="assay_mg", unit="mg", measured=207.0,
                          known=200.0, sigma=2.0, bias=7.0, bias_sigmas=3.5, verdict=OUT_OF_CONTROL,
                          rule="shewhart_action", warning_sigmas=2.0, action_sigmas=3.0, seq=12, time_unix_s=1.0)
    assert b'"kind":"control"' in encode(msg)
    with pytest.raises(MessageError):
        control_message(device_id="nir-01", standard="check-A", target="assay_mg", unit="mg", measured=207.0,
                        known=200.0, sigma=2.0, bias=7.0, bias_sigmas=3.5, verdict="bad", rule="", warning_sigmas=2.0,
                        action_sigmas=3.0, seq=12)
    st = status_message(device_id="nir-01", state="online", time_unix_s=1.0,
                        control={"check-A": {"verdict": WARNING, "last_time_unix_s": 1.0, "bias": 5.0}})
    assert st["control"] == {"check-A": {"verdict": WARNING, "last_time_unix_s": 1.0, "bias": 5.0}}
    assert "control" not in status_message(device_id="nir-01", state="online", time_unix_s=1.0)


def _control(charts: ControlCharts | None, tag: Any) -> tuple[Any, list[tuple[str, dict[str, Any]]]]:
    from edge.command_queue import CommandQueue, Refusals
    from edge.daemon.control import CommandControl
    from edge.metrics import Counters

    out: list[tuple[str, dict[str, Any]]] = []

    def respond_error(command: str, request_id: str | None, error: str) -> None:
        out.append(("error", {"command": command, "request_id": request_id, "error": error}))

    control = CommandControl(
        config=lambda: None,  # not read by measure_control
        device_id="nir-01", queue=CommandQueue(), refusals=Refusals(count=lambda n: None, respond=respond_error),
        counters=Counters(), audit=lambda e, d: None, reload=lambda *a, **k: None, order_capture=lambda o: True,
        send_command=lambda c, v: True, emit=lambda kind, msg, cmd: out.append(("ok", msg)),
        respond_error=respond_error, tag_sample=tag, control=charts)
    return control, out


def test_measure_control_arms_the_charts_and_tags_the_archive() -> None:
    from edge.commands import RemoteCommand

    tags: list[tuple[str, int, str | None]] = []
    charts = ControlCharts([std()], clock=lambda: 0.0)
    control, out = _control(charts, lambda sample_id, frames, rid: tags.append((sample_id, frames, rid)) or 5.0)
    cmd = RemoteCommand(CommandName.MEASURE_CONTROL, MeasureControlArgs("check-A", 3), "qc-1", True, None)
    control.execute(cmd)
    assert charts.pending() == 3 and tags == [("control:check-A", 3, "qc-1")]
    assert out[-1][1]["ok"] is True and out[-1][1]["result"] == {
        "standard": "check-A", "frames": 3, "pending": 3, "archive_tagged_unix_s": 5.0}
    control.execute(RemoteCommand(CommandName.MEASURE_CONTROL, MeasureControlArgs("nope", 1), "qc-2", True, None))
    assert out[-1][0] == "error" and "got 'nope'" in str(out[-1][1]["error"]) and charts.pending() == 3

    unconfigured, out2 = _control(None, None)
    unconfigured.execute(cmd)
    assert out2[-1][0] == "error" and "expected [[control.standards]]" in str(out2[-1][1]["error"])

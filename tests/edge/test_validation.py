"""Tests of edge.validation: the one vocabulary of "<where>: expected X, got Y" checks the device side's readers
(manifest, spec, OOD/interval members, configuration, commands) share."""

from __future__ import annotations

import doctest
import math
import re

import pytest

import edge.validation
from edge.errors import BundleError, CommandError, ConfigError, SpecError
from edge.validation import (
    MAX_SHOWN_CHARS,
    is_number,
    require_bool,
    require_enum,
    require_fields,
    require_int,
    require_keys,
    require_mapping,
    require_number,
    require_range,
    require_str,
)


def test_doctests() -> None:
    result = doctest.testmod(edge.validation)
    assert result.attempted > 0 and result.failed == 0


def test_each_check_raises_the_callers_error_with_where_expected_and_got() -> None:
    with pytest.raises(CommandError, match=r"^cmd\.args\.frames: expected an integer in 1\.\.60000000, got 0$"):
        require_int(0, "cmd.args.frames", CommandError, minimum=1, maximum=60_000_000)
    with pytest.raises(BundleError, match=r"^manifest: golden\.count: expected an integer >= 1, got true$"):
        require_int(True, "manifest: golden.count", BundleError, minimum=1)  # JSON true is not 1
    with pytest.raises(SpecError, match=r"^window: expected an integer, got 5\.0$"):
        require_int(5.0, "window", SpecError)
    with pytest.raises(ConfigError, match=r"^a\.b: expected a finite number, got nan$"):
        require_number(math.nan, "a.b", ConfigError)
    with pytest.raises(ConfigError, match=r"^a\.b: expected a number > 0 and <= 1, got 1\.5$"):
        require_number(1.5, "a.b", ConfigError, minimum=0.0, min_exclusive=True, maximum=1.0)
    with pytest.raises(ConfigError, match=r"^a\.b: expected a value <= 65535, got 70000$"):
        require_range(70000, "a.b", ConfigError, minimum=1, maximum=65535)
    with pytest.raises(ConfigError, match=r"^a\.b: expected true or false, got 'no'$"):
        require_bool("no", "a.b", ConfigError)
    with pytest.raises(SpecError, match=re.escape("norm: expected one of ['vector', 'area'], got 'l3'")):
        require_enum("l3", "norm", SpecError, ("vector", "area"))
    with pytest.raises(SpecError, match=r"expected one of \[1\], got true"):
        require_enum(True, "spec_version", SpecError, (1,))  # True == 1 in Python, not in JSON
    with pytest.raises(BundleError, match=r"^manifest: model_id: expected a string, got 3$"):
        require_str(3, "manifest: model_id", BundleError)
    with pytest.raises(BundleError, match=r"^ood: expected an object, got list$"):
        require_mapping([], "ood", BundleError)
    assert require_int(7, "x", SpecError, minimum=0) == 7 and require_number(2, "x", SpecError) == 2.0


def test_require_keys_names_missing_and_unknown_keys() -> None:
    with pytest.raises(BundleError, match=r"^golden: missing key\(s\) count, output_int8_lsb$"):
        require_keys({"a": 1}, "golden", BundleError, ("output_int8_lsb", "count"), ("a",))
    with pytest.raises(SpecError, match=r"^unknown key\(s\) dof; expected ddof, op$"):
        require_keys({"op": "snv", "dof": 1}, "", SpecError, (), ("op", "ddof"))
    require_keys({"q_hat": [1.0], "coverage": 0.9, "later": 1}, "intervals", BundleError, ("q_hat", "coverage"),
                 allow_unknown=True)


def test_require_fields_names_the_first_unknown_then_the_first_missing_key() -> None:
    with pytest.raises(CommandError, match=r"^deploy_commit\.args\.extra: unknown argument \(expected transfer_id, "
                                           r"probation\)$"):
        require_fields({"transfer_id": "t", "extra": 1}, "deploy_commit.args", CommandError, ("transfer_id",),
                       ("probation",))
    with pytest.raises(CommandError, match=r"^drop_challenger\.args\.now: unknown argument \(expected no "
                                           r"arguments\)$"):
        require_fields({"now": True}, "drop_challenger.args", CommandError)
    with pytest.raises(CommandError, match=r"^load_challenger\.args\.path: required argument missing \(the "
                                           r"challenger bundle\)$"):
        require_fields({}, "load_challenger.args", CommandError, ("path",), hints={"path": "the challenger bundle"})
    with pytest.raises(CommandError, match=r"^probation\.max_drift: unknown key \(expected window_spectra\)$"):
        require_fields({"max_drift": 1}, "probation", CommandError, optional=("window_spectra",), noun="key")
    require_fields({"a": 1}, "x", CommandError, ("a",), ("b",))


def test_an_integer_beyond_float_range_is_refused_as_a_number_not_raised_as_overflow() -> None:
    """JSON allows 1e400 written as digits; ``math.isfinite`` raises OverflowError on such an int, which escaped
    as a crash instead of the caller's error (failed before the fix)."""
    huge = 10 ** 400
    assert not is_number(huge)
    with pytest.raises(CommandError, match=r"^promote\.max_rmsep_ratio: expected a number in 0\.\.1e\+06, got 1000"):
        require_number(huge, "promote.max_rmsep_ratio", CommandError, minimum=0.0, maximum=1e6)


def test_a_pattern_must_match_the_whole_string_not_up_to_a_trailing_newline() -> None:
    """``re.match`` with ``$`` accepts "sim-01\\n": a device id or nonce with a newline passed (failed before the
    fix)."""
    level = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
    with pytest.raises(ConfigError, match=r"^device\.device_id: expected 1-64 characters, got 'sim-01\\n'$"):
        require_str("sim-01\n", "device.device_id", ConfigError, pattern=level, pattern_doc="1-64 characters")
    assert require_str("sim-01", "device.device_id", ConfigError, pattern=level) == "sim-01"


def test_a_long_value_is_shown_cut_short() -> None:
    with pytest.raises(CommandError) as info:
        require_int("x" * 10_000, "cmd.args.frames", CommandError, minimum=1)
    got = str(info.value).split(", got ", 1)[1]
    assert len(got) == MAX_SHOWN_CHARS and got.endswith("...")

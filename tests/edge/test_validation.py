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
    require_bool,
    require_enum,
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

"""Tests of edge.config_example: the commented example and :func:`render_config`, the one writer of a daemon
configuration (the tests' ``write_config``, the benchmarks' harness and the demo render through it)."""

from __future__ import annotations

import doctest
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (Jetson): the tomli backport
    import tomli as tomllib

import edge.config_example
from edge.config import load_config, parse_config
from edge.config_example import render_config


def test_doctests() -> None:
    result = doctest.testmod(edge.config_example)
    assert result.attempted > 0 and result.failed == 0


def test_rendered_text_reads_back_as_the_same_document() -> None:
    """Top-level keys, tables, a table in a table, an array of tables, and strings TOML must escape (quote,
    backslash, newline, DEL, a control character) or may hold raw (non-ASCII)."""
    doc = {
        "log_level": "DEBUG",
        "device": {"site": 'say "a"\\b', "line": "l\n\x7f\x01", "device_id": "é-😀"},
        "mqtt": {"port": 1883, "keepalive_s": 2.5, "tls": {"enabled": True, "ca_path": Path("/etc/ca.pem")}},
        "control": {"standards": [{"name": "a", "value": 1.0}, {"name": "b", "value": 2.0}]},
        "deploy": {"groups": ("g1", "g2/x")},
        "key with space": {"x": 1},
    }
    back = tomllib.loads(render_config(doc, comment="two\nlines"))
    assert back == {**doc, "mqtt": {**doc["mqtt"], "tls": {"enabled": True, "ca_path": "/etc/ca.pem"}},
                    "deploy": {"groups": ["g1", "g2/x"]}}


def test_a_rendered_config_loads_as_parse_config_reads_the_mapping(tmp_path: Path) -> None:
    doc = {"log_level": "WARNING",
           "device": {"site": "plant-a", "line": "line-1", "device_id": "sim-01"},
           "serial": {"port_url": "loop://", "read_timeout_s": 0.05},
           "bundle": {"path": str(tmp_path / "model.spectrolite"), "watch": False, "persist": False},
           "mqtt": {"host": "127.0.0.1", "port": 1884, "tls": {"enabled": False}},
           "outbox": {"path": str(tmp_path / "outbox.sqlite"), "drain_rate_msgs_per_s": 200.0}}
    path = tmp_path / "edge.toml"
    path.write_text(render_config(doc), encoding="utf-8")
    assert load_config(path, env={}) == parse_config(doc, base_dir=tmp_path, env={})

"""Tests of edge.config: loading, defaults, environment overrides and a message naming every bad key."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from edge.config import (
    EdgeConfig,
    MqttConfig,
    OutboxConfig,
    TlsConfig,
    example_config,
    load_config,
    parse_config,
)
from edge.errors import ConfigError
from tests.support.daemon import DemoBundles

MINIMAL = """
[device]
site = "plant-a"
line = "line-3"
device_id = "nir-01"
[serial]
port_url = "loop://"
[bundle]
path = "models/model.bundle"
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "edge.toml"
    p.write_text(text)
    return p


def _minimal() -> dict[str, typing.Any]:
    return {"device": {"site": "plant-a", "line": "line-3", "device_id": "nir-01"},
            "serial": {"port_url": "loop://"}, "bundle": {"path": "model.bundle"}}


def test_minimal_file_gets_documented_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, MINIMAL), env={})
    assert cfg.mqtt.qos == 1
    assert cfg.mqtt.protocol == "3.1.1"
    assert cfg.mqtt.clean_session is False  # persistent session by default
    assert cfg.mqtt.client_id == "spectrolite-nir-01"
    assert cfg.bundle.path == tmp_path.resolve() / "models" / "model.bundle"  # relative to the file
    assert cfg.outbox.path == tmp_path.resolve() / "outbox.sqlite"
    assert cfg.commands.allowed_dirs == (tmp_path.resolve() / "models",)
    assert cfg.source == tmp_path / "edge.toml"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mqtt.port = 1  # type: ignore[misc]  # frozen


def test_example_config_loads_as_printed(tmp_path: Path) -> None:
    text = example_config()
    cfg = load_config(_write(tmp_path, text), env={})
    assert cfg.device.device_id == "nir-01"
    assert cfg.serial.port_url == "/dev/ttyUSB0"
    # Every key of every section is documented in the example (commented out when it has no default).
    for section in ("device", "serial", "bundle", "references", "runtime", "queues", "mqtt", "mqtt.tls",
                    "outbox", "commands", "drift", "metrics"):
        assert f"[{section}]" in text
    for f in dataclasses.fields(MqttConfig):
        if f.name != "tls":
            assert f"{f.name} = " in text
    for f in dataclasses.fields(TlsConfig):
        assert f"{f.name} = " in text
    # An array of tables is shown commented out, ready to uncomment (`standards = []` could not take one).
    assert "standards = []" not in text and "# [[control.standards]]" in text
    start = text.index("# [[control.standards]]")
    block = text[start:].split("\n\n", 1)[0].splitlines()
    uncommented = "\n".join(line[2:] if line.startswith("# ") and " = " in line or line.startswith("# [[") else line
                            for line in block)
    cfg = load_config(_write(tmp_path, text.replace("\n".join(block), uncommented)), env={})
    assert [s.name for s in cfg.control.standards] == ["check-A"] and cfg.control.standards[0].sigma == 1.5


def test_environment_overrides_convert_to_the_field_type(tmp_path: Path) -> None:
    env = {
        "SPECTROLITE__MQTT__HOST": "broker.plant.local",
        "SPECTROLITE__MQTT__PORT": "8883",
        "SPECTROLITE__MQTT__PROTOCOL": "5",
        "SPECTROLITE__MQTT__TLS__ENABLED": "true",
        "SPECTROLITE__OUTBOX__DRAIN_RATE_MSGS_PER_S": "12.5",
        "SPECTROLITE__COMMANDS__ALLOWED_DIRS": "bundles, /srv/other",
        "SPECTROLITE__LOG_LEVEL": "DEBUG",
        "UNRELATED": "ignored",
    }
    cfg = load_config(_write(tmp_path, MINIMAL), env=env)
    assert cfg.mqtt.host == "broker.plant.local"
    assert cfg.mqtt.port == 8883
    assert cfg.mqtt.protocol == "5"
    assert cfg.mqtt.tls.enabled is True
    assert cfg.outbox.drain_rate_msgs_per_s == 12.5
    assert cfg.commands.allowed_dirs == (tmp_path.resolve() / "bundles", Path("/srv/other"))
    assert cfg.log_level == "DEBUG"


def test_environment_override_wins_over_the_file(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, MINIMAL + "[mqtt]\nport = 1884\n"), env={"SPECTROLITE__MQTT__PORT": "1885"})
    assert cfg.mqtt.port == 1885


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SPECTROLITE__MQTT__PORT": "eighty"}, "mqtt.port: expected an integer, got 'eighty'"),
        ({"SPECTROLITE__MQTT__TLS__ENABLED": "maybe"}, "mqtt.tls.enabled: expected true or false, got 'maybe'"),
        ({"SPECTROLITE__MQTT__HOTS": "x"}, "mqtt.hots: unknown key"),
        ({"SPECTROLITE__MQTT__QOS": "3"}, "mqtt.qos: expected 0, 1 or 2, got 3"),
    ],
)
def test_bad_environment_override_names_the_key(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(_write(tmp_path, MINIMAL), env=env)


# (section, key, bad value, expected fragment of the message)
BAD_VALUES = [
    ("mqtt", "qos", 3, "mqtt.qos: expected 0, 1 or 2, got 3"),
    ("mqtt", "qos", "1", "mqtt.qos: expected an integer, got '1'"),
    ("mqtt", "port", 0, "mqtt.port: expected a value >= 1, got 0"),
    ("mqtt", "port", 70000, "mqtt.port: expected a value <= 65535, got 70000"),
    ("mqtt", "protocol", "4", "mqtt.protocol: expected '3.1.1' or '5', got '4'"),
    ("mqtt", "keepalive_s", 1, "mqtt.keepalive_s: expected a value >= 5, got 1"),
    ("mqtt", "clean_session", "no", "mqtt.clean_session: expected true or false, got 'no'"),
    ("mqtt", "topic_prefix", "a/+/b", "mqtt.topic_prefix: expected 1-8 levels"),
    ("mqtt", "host", 5, "mqtt.host: expected a string, got 5"),
    ("serial", "baudrate", 9600.5, "serial.baudrate: expected an integer, got 9600.5"),
    ("serial", "read_timeout_s", 0, "serial.read_timeout_s: expected a value > 0, got 0"),
    ("serial", "read_timeout_s", True, "serial.read_timeout_s: expected a number, got true"),
    ("device", "site", "plant/a", "device.site: expected 1-64 characters"),
    ("device", "device_id", "#", "device.device_id: expected 1-64 characters"),
    ("queues", "policy", "drop_all", "queues.policy: expected 'drop_oldest', 'drop_newest' or 'block'"),
    ("outbox", "full_policy", "pray", "outbox.full_policy: expected 'drop_oldest' or 'refuse_new'"),
    ("outbox", "max_messages", 0, "outbox.max_messages: expected a value >= 1, got 0"),
    ("outbox", "synchronous", "off", "outbox.synchronous: expected 'normal' or 'full'"),
    ("commands", "max_payload_bytes", 10, "commands.max_payload_bytes: expected a value >= 64, got 10"),
    ("commands", "allowed_dirs", "one", "commands.allowed_dirs: expected an array, got 'one'"),
    ("commands", "allowed_dirs", [1], "commands.allowed_dirs[0]: expected a path"),
    ("drift", "ewma_alpha", 1.5, "drift.ewma_alpha: expected a value <= 1, got 1.5"),
    ("drift", "ewma_alpha", float("nan"), "drift.ewma_alpha: expected a finite number, got nan"),
    ("metrics", "period_s", -1, "metrics.period_s: expected a value > 0, got -1"),
    ("runtime", "num_threads", 0, "runtime.num_threads: expected a value >= 1, got 0"),
    ("references", "max_age_s", "1h", "references.max_age_s: expected a number, got '1h'"),
    ("bundle", "public_key_path", "missing.pub", "bundle.public_key_path: expected an existing file"),
    ("bundle", "watch", 1, "bundle.watch: expected true or false, got 1"),
]


@pytest.mark.parametrize(("section", "key", "value", "message"), BAD_VALUES,
                         ids=[f"{s}.{k}={v!r}" for s, k, v, _ in BAD_VALUES])
def test_bad_value_names_the_key_and_what_was_expected(tmp_path: Path, section: str, key: str,
                                                       value: object, message: str) -> None:
    doc = _minimal()
    doc.setdefault(section, {})[key] = value
    with pytest.raises(ConfigError) as err:
        parse_config(doc, base_dir=tmp_path)
    assert message in str(err.value)


def test_every_scalar_key_rejects_a_table(tmp_path: Path) -> None:
    """Issue 7: every key wrong in type gets a message naming it (a table is wrong for every scalar key)."""
    hints_of = typing.get_type_hints
    checked = 0
    for sec in dataclasses.fields(EdgeConfig):
        if sec.name in ("source", "log_level"):
            continue
        sec_type = hints_of(EdgeConfig)[sec.name]
        tables = [(sec.name, sec_type)]
        for f in dataclasses.fields(sec_type):
            sub = hints_of(sec_type)[f.name]
            if dataclasses.is_dataclass(sub):
                tables.append((f"{sec.name}.{f.name}", sub))
        for prefix, cls in tables:
            for f in dataclasses.fields(cls):
                if dataclasses.is_dataclass(hints_of(cls)[f.name]):
                    continue
                doc = _minimal()
                node = doc
                for part in prefix.split("."):
                    node = node.setdefault(part, {})
                node[f.name] = {"oops": 1}
                with pytest.raises(ConfigError, match=rf"^{prefix}\.{f.name}: expected "):
                    parse_config(doc, base_dir=tmp_path)
                checked += 1
    assert checked > 60


def test_missing_required_key_and_unknown_key(tmp_path: Path) -> None:
    doc = _minimal()
    del doc["device"]["line"]
    with pytest.raises(ConfigError, match=r"device\.line: required key missing"):
        parse_config(doc, base_dir=tmp_path)
    doc = _minimal()
    doc["serial"]["baud"] = 9600
    with pytest.raises(ConfigError, match=r"serial\.baud: unknown key \(known keys in serial: port_url, baudrate"):
        parse_config(doc, base_dir=tmp_path)
    doc = _minimal()
    doc["mqqt"] = {}
    with pytest.raises(ConfigError, match=r"mqqt: unknown key"):
        parse_config(doc, base_dir=tmp_path)


def test_cross_field_checks(tmp_path: Path) -> None:
    key = tmp_path / "hmac.key"
    key.write_text("short")
    cases: list[tuple[dict[str, typing.Any], str]] = [
        ({"mqtt": {"reconnect_min_delay_s": 10, "reconnect_max_delay_s": 5}}, "mqtt.reconnect_max_delay_s"),
        ({"mqtt": {"username": "u", "password": "p", "password_file": str(key)}}, "mqtt.password_file"),
        ({"mqtt": {"password": "p"}}, "mqtt.username: expected a user name"),
        ({"mqtt": {"tls": {"enabled": True, "cert_path": str(key)}}}, "mqtt.tls.key_path: expected both"),
        ({"mqtt": {"tls": {"ca_path": str(key)}}}, "mqtt.tls.enabled: expected true when mqtt.tls.ca_path is set"),
        ({"drift": {"raise_ratio": 1.0, "clear_ratio": 1.0}}, "drift.clear_ratio: expected a value below"),
        ({"commands": {"enabled": True}}, "commands.hmac_key_path: expected a key file"),
        ({"commands": {"enabled": True, "require_auth": True}}, "commands.hmac_key_path: expected a key file"),
        ({"commands": {"hmac_key_path": str(key)}}, "commands.hmac_key_path: expected a key of at least 16"),
    ]
    for extra, message in cases:
        doc = _minimal()
        for section, values in extra.items():
            doc[section] = values
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            parse_config(doc, base_dir=tmp_path)


def test_an_unreadable_hmac_key_names_the_key_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key created by root with mode 0600 and a daemon running as its service user (the tests may run as root,
    who reads everything: the refusal is simulated)."""
    key = tmp_path / "hmac.key"
    key.write_bytes(b"k" * 32)
    real = Path.read_bytes

    def refuse(self: Path) -> bytes:
        if self == key:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    doc = _minimal()
    doc["commands"] = {"hmac_key_path": str(key)}
    with pytest.raises(ConfigError, match=r"commands\.hmac_key_path: expected a file this user \(uid \d+\) can read, "
                                          r"got .*hmac\.key \(Permission denied\); .*chmod 0640"):
        parse_config(doc, base_dir=tmp_path)


def test_the_mqtt_password_stays_out_of_the_printed_configuration(tmp_path: Path) -> None:
    doc = _minimal()
    doc["mqtt"] = {"username": "nir-01", "password": "s3cr3t-pass"}
    cfg = parse_config(doc, base_dir=tmp_path)
    assert cfg.mqtt.password == "s3cr3t-pass"
    assert "s3cr3t-pass" not in repr(cfg) and "nir-01" in repr(cfg)  # what `spectro-edge -v config` prints


def test_protocol_accepts_the_integer_five(tmp_path: Path) -> None:
    doc = _minimal()
    doc["mqtt"] = {"protocol": 5}
    assert parse_config(doc, base_dir=tmp_path).mqtt.protocol == "5"


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(tmp_path / "missing.toml", env={})
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(_write(tmp_path, "[device\nsite = 1"), env={})
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="expected UTF-8"):
        load_config(bad, env={})


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_config({}, base_dir=Path("."))


def test_systemd_unit_runs_the_daemon_and_outwaits_the_flush(repo_root: Path) -> None:
    import configparser

    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # configparser's documented hook: keys keep their case
    unit.read_string((repo_root / "deploy" / "spectrolite-edge.service").read_text())
    service = unit["Service"]
    assert "spectro-edge run --config" in service["ExecStart"]
    assert service["KillSignal"] == "SIGTERM" and service["Restart"] == "always"
    assert float(service["TimeoutStopSec"]) > OutboxConfig().flush_timeout_s
    assert unit["Install"]["WantedBy"] == "multi-user.target"


# ------------------------------------------------------------------------------------- spectro-edge config --validate
def _validate(tmp_path: Path, capsys: pytest.CaptureFixture[str], *, bundle: Path, port_url: str) -> tuple[int, str]:
    from edge.cli import main

    path = _write(tmp_path, MINIMAL.replace('"loop://"', f'"{port_url}"').replace('"models/model.bundle"',
                                                                                    f'"{bundle}"'))
    code = main(["config", "--validate", str(path)])
    return code, capsys.readouterr().out


def test_validate_checks_the_bundle_and_the_serial_device(tmp_path: Path, demo_bundles: DemoBundles,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import os

    master, slave = os.openpty()
    try:
        code, out = _validate(tmp_path, capsys, bundle=demo_bundles.v1, port_url=os.ttyname(slave))
    finally:
        os.close(master)
        os.close(slave)
    lines = out.splitlines()
    assert code == 0, out
    assert [line.split()[:2] for line in lines[:4]] == [["OK", "config"], ["OK", "mqtt"], ["OK", "bundle"],
                                                        ["OK", "serial"]]
    assert "client built: plaintext, anonymous" in lines[1]
    assert "synthetic-demo 1.0.0" in lines[2] and "self-test PASSED" in lines[2] and "takes counts frames" in lines[2]
    assert "a character device" in lines[3]
    assert lines[4].startswith("verdict: OK")

    code, out = _validate(tmp_path, capsys, bundle=demo_bundles.v1, port_url="socket://192.0.2.1:7000")
    assert code == 0 and "accepted as it is (not opened)" in out


@pytest.mark.parametrize(
    ("problem", "port_url", "fragment"),
    [
        ("missing bundle", "loop://", "FAIL  bundle"),
        ("tampered bundle", "loop://", "FAIL  bundle"),
        ("no device", "/dev/ttyNOPE-spectrolite", "FAIL  serial  /dev/ttyNOPE-spectrolite: no such device"),
        ("unknown scheme", "ftp://x", "FAIL  serial  ftp://x: expected a device path or a pyserial URL"),
        ("spy of no device", "spy:///dev/ttyNOPE-spectrolite", "FAIL  serial"),
    ],
)
def test_validate_fails_with_one_line_per_failed_check(tmp_path: Path, demo_bundles: DemoBundles,
                                                       capsys: pytest.CaptureFixture[str], problem: str,
                                                       port_url: str, fragment: str) -> None:
    bundle = demo_bundles.v1
    if problem == "missing bundle":
        bundle = tmp_path / "absent.spectrolite"
    elif problem == "tampered bundle":
        data = bytearray(demo_bundles.v1.read_bytes())
        data[len(data) // 3] ^= 0x01
        bundle = tmp_path / "tampered.spectrolite"
        bundle.write_bytes(bytes(data))
    code, out = _validate(tmp_path, capsys, bundle=bundle, port_url=port_url)
    assert code == 1, out
    assert fragment in out
    assert out.splitlines()[-1].startswith("verdict: FAIL")
    assert sum(line.startswith("FAIL") for line in out.splitlines()) == 1


@pytest.mark.parametrize("problem", ["garbage CA", "password not text", "unknown control target", "self-test off"])
def test_validate_runs_the_checks_run_starts_with(tmp_path: Path, demo_bundles: DemoBundles,
                                                  capsys: pytest.CaptureFixture[str], problem: str) -> None:
    """What `spectro-edge run` would refuse at start, `config --validate` (the service's pre-start check) refuses
    too; and a bundle the daemon would serve without its self-test is not failed by one."""
    from edge.cli import main

    text = MINIMAL.replace('"models/model.bundle"', f'"{demo_bundles.v1}"')
    if problem == "garbage CA":
        ca = tmp_path / "ca.pem"
        ca.write_text("not a certificate\n", encoding="utf-8")
        text += f'[mqtt]\nport = 8883\n[mqtt.tls]\nenabled = true\nca_path = "{ca}"\n'
    elif problem == "password not text":
        secret = tmp_path / "mqtt.password"
        secret.write_bytes(b"\xff\xfe\x00binary")
        text += f'[mqtt]\nusername = "u"\npassword_file = "{secret}"\n'
    elif problem == "unknown control target":
        text += '[[control.standards]]\nname = "check-A"\ntarget = "assay_mg"\nvalue = 200.0\nsigma = 1.5\n'
    else:
        text = text.replace("[bundle]\n", "[bundle]\nself_test = false\n")
    code = main(["config", "--validate", str(_write(tmp_path, text))])
    out = capsys.readouterr().out
    if problem == "self-test off":
        assert code == 0 and "self-test not run (bundle.self_test = false)" in out, out
        return
    assert code == 1, out
    fail = [line for line in out.splitlines() if line.startswith("FAIL")]
    if problem == "garbage CA":
        assert len(fail) == 1 and fail[0].startswith("FAIL  mqtt    mqtt.tls.ca_path / cert_path / key_path: "), out
    elif problem == "password not text":
        assert len(fail) == 1 and fail[0].startswith("FAIL  mqtt    mqtt.password_file: cannot be read"), out
    else:
        assert len(fail) == 1 and fail[0].startswith("FAIL  bundle") and "assay_mg" in fail[0], out


def test_validate_of_a_broken_configuration_is_one_fail_line(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from edge.cli import main

    path = _write(tmp_path, "[device]\nsite = 3\n")
    assert main(["config", "--validate", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("FAIL  config") and out[-1].startswith("verdict: FAIL (the configuration does not load")


def test_validate_can_leave_the_serial_device_to_the_daemon(tmp_path: Path, demo_bundles: DemoBundles,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A service's pre-start check: the spectrometer may be plugged in after the daemon started (it waits)."""
    from edge.cli import main

    path = _write(tmp_path, MINIMAL.replace('"loop://"', '"/dev/ttyNOPE-spectrolite"').replace(
        '"models/model.bundle"', f'"{demo_bundles.v1}"'))
    assert main(["config", "--validate", str(path), "--skip-serial"]) == 0
    out = capsys.readouterr().out
    assert "SKIP  serial  /dev/ttyNOPE-spectrolite: not checked" in out and "FAIL" not in out
    assert main(["config", "--validate", str(path)]) == 1


def test_the_config_modules_doctests_hold() -> None:
    import doctest

    import edge.config

    result = doctest.testmod(edge.config)
    assert result.attempted > 0 and result.failed == 0

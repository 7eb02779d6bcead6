"""Daemon configuration: a TOML file with environment overrides, validated once into frozen typed dataclasses.

API (stable; the daemon and the CLI call these)::

    load_config(path, env=os.environ) -> EdgeConfig    # raises ConfigError naming the key and what was expected
    parse_config(data: dict, *, base_dir: Path, env=None) -> EdgeConfig
    example_config() -> str                             # commented TOML that itself loads

Sections (every field has its unit in its name): ``device``, ``serial``, ``bundle``, ``references``,
``runtime``, ``queues``, ``mqtt`` (with ``mqtt.tls``), ``outbox``, ``commands``, ``drift``, ``metrics``, ``audit``,
``homeassistant``, ``archive``, ``opcua``, ``control``, ``deploy``, ``lines`` and the top-level ``log_level``.
The schema *is* the dataclasses of
:mod:`edge.config_sections` (re-exported here): each field carries its documentation and its constraints in
``dataclasses.field(metadata=...)``, and both the validator below and :func:`example_config`
(:mod:`edge.config_example`) read them, so the example can never drift from what the loader accepts.

Safe by default: remote commands (which change acquisition or the model) are off, and once on they need an HMAC
unless ``commands.require_auth = false`` opts out explicitly; on without a key is a :class:`ConfigError` that says
how to create one.  Every insecure setting left in force is listed by :func:`security_warnings`.

Environment overrides have the form ``SPECTROLITE__<SECTION>__<KEY>=value`` (nested tables add levels:
``SPECTROLITE__MQTT__TLS__CA_PATH=/etc/spectrolite/ca.pem``).  The value is converted to the field's type
(``true``/``false``/``1``/``0`` for booleans, comma-separated for lists); an override of an unknown key is an
error, like an unknown key in the file.  An empty value unsets an optional key, whatever the file says (an empty
``SPECTROLITE__BUNDLE__PUBLIC_KEY_PATH`` turns signature checking off, named by the ``bundles_unsigned`` warning).
Relative paths, in the file or in the environment, are resolved against the directory of the configuration file.

Why hand-written rather than pydantic or similar: the device installs only numpy, pyserial, paho-mqtt and a
TFLite runtime, and the whole validator is one small recursive function over ``dataclasses.fields``.

>>> doc = {"device": {"site": "plant-a", "line": "l1", "device_id": "nir-01"},
...        "serial": {"port_url": "loop://"}, "bundle": {"path": "model.bundle"}}
>>> cfg = parse_config(doc, base_dir=Path("/srv"))
>>> cfg.mqtt.qos, cfg.mqtt.client_id, cfg.outbox.path.name
(1, 'spectrolite-nir-01', 'outbox.sqlite')
>>> parse_config({**doc, "mqtt": {"qos": 3}}, base_dir=Path("/srv"))
Traceback (most recent call last):
...
edge.errors.ConfigError: mqtt.qos: expected 0, 1 or 2, got 3
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge.config_example import example_config
from edge.config_sections import (
    REQUIRED,
    SECURITY_WARNINGS,
    ArchiveConfig,
    AuditConfig,
    BundleConfig,
    CommandsConfig,
    ControlConfig,
    ControlStandardConfig,
    DeployConfig,
    DeviceConfig,
    DriftConfig,
    EdgeConfig,
    HomeAssistantConfig,
    MetricsConfig,
    MqttConfig,
    OpcUaConfig,
    OutboxConfig,
    QueuesConfig,
    ReferencesConfig,
    RuntimeConfig,
    SerialConfig,
    TlsConfig,
    field_hints,
    fmt_choices,
    security_warnings,
    split_broker_address,
    toml_value,
)
from edge.errors import ConfigError
from edge.validation import require, require_bool, require_int, require_number, require_range, require_str

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "ENV_PREFIX",
    "SECURITY_WARNINGS",
    "security_warnings",
    "DeviceConfig",
    "SerialConfig",
    "BundleConfig",
    "ReferencesConfig",
    "RuntimeConfig",
    "QueuesConfig",
    "TlsConfig",
    "MqttConfig",
    "OutboxConfig",
    "CommandsConfig",
    "DriftConfig",
    "MetricsConfig",
    "AuditConfig",
    "ArchiveConfig",
    "HomeAssistantConfig",
    "OpcUaConfig",
    "ControlConfig",
    "ControlStandardConfig",
    "DeployConfig",
    "EdgeConfig",
    "load_config",
    "parse_config",
    "example_config",
]

#: Prefix of environment overrides; levels are separated by a double underscore.
ENV_PREFIX = "SPECTROLITE__"
#: The fewest predictions a self-starting prediction CUSUM may learn its baseline from (``drift.
#: cusum_baseline_frames``): a spread learned from n predictions is off by about 1/sqrt(2n) (16 % at 20).
MIN_CUSUM_BASELINE_FRAMES = 20


# ------------------------------------------------------------------------------------------------- validation

def _is_optional(tp: Any) -> tuple[bool, Any]:
    args = typing.get_args(tp)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return True, rest[0]
    return False, tp


class _EnvText(str):
    """A string that came from an environment variable and still needs conversion to the field's type."""


def _convert(key: str, tp: Any, raw: Any, meta: Mapping[str, Any], base_dir: Path) -> Any:
    optional, tp = _is_optional(tp)
    from_env = isinstance(raw, _EnvText)
    if optional and (raw is None or (from_env and raw.strip() == "")):
        return None
    if tp is bool:
        if from_env:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{key}: expected true or false, got {str(raw)!r}")
        return require_bool(raw, key, ConfigError)
    if tp is int:
        value: Any = raw
        if from_env:
            try:
                value = int(raw.strip(), 0)
            except ValueError:
                raise ConfigError(f"{key}: expected an integer, got {str(raw)!r}") from None
        return _check_value(key, require_int(value, key, ConfigError), meta)
    if tp is float:
        value = raw
        if from_env:
            try:
                value = float(raw.strip())
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {str(raw)!r}") from None
        if isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        return _check_value(key, require_number(value, key, ConfigError), meta)
    if tp is str:
        value = str(raw) if from_env else raw
        if isinstance(value, int) and not isinstance(value, bool) and meta.get("choices"):
            value = str(value)  # protocol = 5
        require_str(value, key, ConfigError)
        require("\x00" not in value, ConfigError, key, "a string without NUL characters")
        pattern = meta.get("pattern")
        if pattern is not None:
            doc = meta.get("pattern_doc") or pattern.pattern
            require_str(value, key, ConfigError, pattern=pattern, pattern_doc=doc)
        return _check_value(key, value, meta)
    if tp is Path:
        require_str(raw, key, ConfigError, non_empty=True, pattern_doc="a path (a non-empty string)")
        if "\x00" in raw:
            raise ConfigError(f"{key}: expected a path without NUL characters")
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        if meta.get("must_exist") and not path.is_file():
            hint = "; " + meta["missing_hint"].format(path=path) if meta.get("missing_hint") else ""
            raise ConfigError(f"{key}: expected an existing file, got {str(path)!r} (not found{hint})")
        return path
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # an item of an array of tables
        return _build(tp, raw, key + ".", base_dir)
    if typing.get_origin(tp) is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if from_env:
            text = raw.strip()
            items: Any = [s.strip() for s in text.split(",") if s.strip()] if text else []
        else:
            items = raw
        require(isinstance(items, list), ConfigError, key, "an array", items)
        return tuple(_convert(f"{key}[{i}]", item_tp, v, {}, base_dir) for i, v in enumerate(items))
    raise TypeError(f"unsupported config field type {tp!r} for {key}")  # pragma: no cover


def _check_value(key: str, value: Any, meta: Mapping[str, Any]) -> Any:
    choices = meta.get("choices")
    if choices is not None:
        require(value in choices, ConfigError, key, fmt_choices(choices), value)
    if not isinstance(value, str):
        require_range(value, key, ConfigError, minimum=meta.get("min"), maximum=meta.get("max"),
                      min_exclusive=bool(meta.get("min_exclusive")))
    return value


def _build(cls: type, data: Any, prefix: str, base_dir: Path) -> Any:
    where = prefix.rstrip(".") or "the configuration"
    require(isinstance(data, dict), ConfigError, where, "a table", data)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (known keys in {where}: {', '.join(fields)})")
    hints = field_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        tp = hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, data.get(name, {}), key + ".", base_dir)
        elif name in data:
            kwargs[name] = _convert(key, tp, data[name], f.metadata, base_dir)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            example = f.metadata.get("example", REQUIRED)
            hint = f", e.g. {name} = {toml_value(example)}" if example is not REQUIRED else ""
            raise ConfigError(f"{key}: required key missing (expected {f.metadata.get('doc', 'a value')}{hint})")
        elif isinstance(f.default, Path):
            kwargs[name] = _convert(key, tp, str(f.default), f.metadata, base_dir)
    return cls(**kwargs)


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Return a copy of ``data`` with every ``SPECTROLITE__A__B=value`` override applied."""
    out: dict[str, Any] = _deep_copy(data)
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if not parts or any(p == "" for p in parts):
            raise ConfigError(f"{name}: expected SPECTROLITE__<SECTION>__<KEY>, got an empty level")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {'.'.join(parts[:-1])} is not a table")
            node = child
        node[parts[-1]] = _EnvText(env[name])
    return out


def _deep_copy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


def _cross_checks(cfg: EdgeConfig) -> EdgeConfig:
    m, s = cfg.mqtt, cfg.serial
    if s.reconnect_min_delay_s > s.reconnect_max_delay_s:
        raise ConfigError(
            f"serial.reconnect_max_delay_s: expected >= serial.reconnect_min_delay_s "
            f"({s.reconnect_min_delay_s:g}), got {s.reconnect_max_delay_s:g}")
    if m.reconnect_min_delay_s > m.reconnect_max_delay_s:
        raise ConfigError(
            f"mqtt.reconnect_max_delay_s: expected >= mqtt.reconnect_min_delay_s "
            f"({m.reconnect_min_delay_s}), got {m.reconnect_max_delay_s}")
    _check_brokers(m)
    if m.password is not None and m.password_file is not None:
        raise ConfigError("mqtt.password_file: expected either mqtt.password or mqtt.password_file, got both")
    if (m.password is not None or m.password_file is not None) and m.username is None:
        raise ConfigError("mqtt.username: expected a user name when a password is configured, got none")
    if (m.tls.cert_path is None) != (m.tls.key_path is None):
        missing = "mqtt.tls.key_path" if m.tls.key_path is None else "mqtt.tls.cert_path"
        raise ConfigError(f"{missing}: expected both mqtt.tls.cert_path and mqtt.tls.key_path, or neither")
    files = [k for k in ("ca_path", "cert_path", "key_path") if getattr(m.tls, k) is not None]
    if files and not m.tls.enabled:  # they would be ignored: the daemon would connect in plaintext
        raise ConfigError(f"mqtt.tls.enabled: expected true when mqtt.tls.{', '.join(files)} "
                          f"{'is' if len(files) == 1 else 'are'} set, got false")
    if cfg.drift.clear_ratio >= cfg.drift.raise_ratio:
        raise ConfigError(
            f"drift.clear_ratio: expected a value below drift.raise_ratio ({cfg.drift.raise_ratio:g}), "
            f"got {cfg.drift.clear_ratio:g}")
    base = cfg.drift.cusum_baseline_frames
    require(base == 0 or base >= MIN_CUSUM_BASELINE_FRAMES, ConfigError, "drift.cusum_baseline_frames",
            f"0 (the bundle's figures) or at least {MIN_CUSUM_BASELINE_FRAMES} frames to learn a spread from", base)
    seen: set[str] = set()
    for i, std in enumerate(cfg.control.standards):
        if std.name in seen:
            raise ConfigError(f"control.standards[{i}].name: expected a name not used by another standard, "
                              f"got {std.name!r} twice")
        seen.add(std.name)
        if std.action_sigmas <= std.warning_sigmas:
            raise ConfigError(f"control.standards[{i}].action_sigmas: expected a value above warning_sigmas "
                              f"({std.warning_sigmas:g}), got {std.action_sigmas:g}")
    c = cfg.commands
    if c.enabled and c.require_auth and c.hmac_key_path is None:
        raise ConfigError(
            "commands.hmac_key_path: expected a key file: commands.enabled is true and commands need an HMAC "
            "(commands.require_auth, true by default); create a key with `spectro-edge keys hmac --out "
            "/etc/spectrolite/hmac.key` (readable by the daemon's user: chgrp spectrolite, chmod 0640) and set "
            "commands.hmac_key_path to it, or set commands.require_auth = false "
            "to accept unsigned commands (insecure, named in a WARNING at start)")
    if c.hmac_key_path is not None:
        try:
            key = c.hmac_key_path.read_bytes().strip()
        except OSError as exc:  # e.g. a key created by root with mode 0600 and a daemon running as spectrolite
            raise ConfigError(
                f"commands.hmac_key_path: expected a file this user (uid {os.getuid()}) can read, got "
                f"{c.hmac_key_path} ({exc.strerror}); give the daemon's group read access, e.g. `chgrp spectrolite "
                f"{c.hmac_key_path} && chmod 0640 {c.hmac_key_path}`") from exc
        if len(key) < 16:
            raise ConfigError(
                f"commands.hmac_key_path: expected a key of at least 16 bytes, got {len(key)} bytes")
    _check_deploy(cfg)
    replace: dict[str, Any] = {}
    if not m.client_id:
        client_id = f"spectrolite-{cfg.device.device_id}"
        replace["mqtt"] = dataclasses.replace(m, client_id=client_id)
    if not c.allowed_dirs:
        replace["commands"] = dataclasses.replace(c, allowed_dirs=(cfg.bundle.path.parent,))
    if cfg.audit.path is None:
        replace["audit"] = dataclasses.replace(cfg.audit, path=cfg.outbox.path.parent / "audit")
    if cfg.archive.path is None:
        replace["archive"] = dataclasses.replace(cfg.archive, path=cfg.outbox.path.parent / "archive.sqlite")
    return dataclasses.replace(cfg, **replace) if replace else cfg


def _check_brokers(m: MqttConfig) -> None:
    """``mqtt.brokers``: valid, distinct ``host:port`` entries, and not beside a ``host``/``port`` of its own."""
    for i, text in enumerate(m.brokers):
        try:
            split_broker_address(text)
        except ValueError as exc:
            raise ConfigError(f"mqtt.brokers[{i}]: {exc}") from None
    if len(set(m.brokers)) != len(m.brokers):
        raise ConfigError(f"mqtt.brokers: expected each address once, got {list(m.brokers)}")
    default = MqttConfig()
    if m.brokers and (m.host, m.port) != (default.host, default.port):
        raise ConfigError(f"mqtt.brokers: expected either mqtt.brokers or mqtt.host/mqtt.port, got both "
                          f"(brokers {list(m.brokers)}, host {m.host!r}, port {m.port}); list every broker in "
                          f"mqtt.brokers and remove host and port")


#: A deployment group: 1-4 topic levels (``plant-a``, ``plant-a/line-1``).
_GROUP_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}(/[A-Za-z0-9._-]{1,64}){0,3}$")


def _check_deploy(cfg: EdgeConfig) -> None:
    """``[deploy]``: on only with commands, a trusted key, and valid group names (:mod:`edge.daemon.deploy`)."""
    d = cfg.deploy
    for i, group in enumerate(d.groups):
        if not _GROUP_RE.match(group):
            raise ConfigError(f"deploy.groups[{i}]: expected 1-4 topic levels of A-Z a-z 0-9 . _ - separated by /, "
                              f"got {group!r}")
    if len(set(d.groups)) != len(d.groups):
        raise ConfigError(f"deploy.groups: expected each group once, got {list(d.groups)}")
    if not d.enabled:
        return
    if not cfg.commands.enabled:
        raise ConfigError("deploy.enabled: expected commands.enabled = true as well (bundles travel as commands), "
                          "got commands off")
    if cfg.bundle.public_key_path is not None and d.trusted_keys:
        raise ConfigError("deploy.trusted_keys: expected none when bundle.public_key_path is set (that key decides "
                          f"what is trusted, here and at a restart), got {len(d.trusted_keys)}")
    if cfg.bundle.public_key_path is None and not d.trusted_keys:
        raise ConfigError("deploy.trusted_keys: expected at least one Ed25519 public key (PEM file): a bundle sent "
                          "over MQTT must be signed by a trusted key whatever the local policy (bundle.public_key_path "
                          "is not set), got none")
    for i, key in enumerate(d.trusted_keys):
        if not key.is_file():
            raise ConfigError(f"deploy.trusted_keys[{i}]: expected an existing file, got {str(key)!r} (not found)")


def parse_config(data: Mapping[str, Any], *, base_dir: Path, env: Mapping[str, str] | None = None,
                 source: Path | None = None) -> EdgeConfig:
    """Validate a parsed TOML document (plus environment overrides) into an :class:`EdgeConfig`.

    Parameters
    ----------
    data : mapping
        The TOML document as a dict of tables.
    base_dir : Path
        Directory relative paths are resolved against (the configuration file's directory).
    env : mapping of str to str, optional
        Environment; only ``SPECTROLITE__*`` names are read.  ``None`` applies no overrides.
    source : Path, optional
        Recorded as :attr:`EdgeConfig.source`.

    Raises
    ------
    ConfigError
        On the first invalid, missing or unknown key, naming it and what was expected.
    """
    merged = _apply_env(dict(data), env or {})
    # Required sections default to empty tables so the error names the missing key, not the section.
    for required in ("device", "serial", "bundle"):
        merged.setdefault(required, {})
    cfg: EdgeConfig = _build(EdgeConfig, merged, "", base_dir)
    cfg = dataclasses.replace(cfg, source=source)
    return _cross_checks(cfg)


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] = os.environ) -> EdgeConfig:
    """Read, override and validate a TOML configuration file.

    Parameters
    ----------
    path : path-like
        TOML file.
    env : mapping of str to str
        Environment to take ``SPECTROLITE__SECTION__KEY`` overrides from (default: ``os.environ``).

    Returns
    -------
    EdgeConfig
        Frozen, fully validated configuration; relative paths resolved against the file's directory.

    Raises
    ------
    ConfigError
        Unreadable file, TOML syntax error, or an invalid/missing/unknown key (the message names it).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the configuration file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: expected UTF-8 text, got undecodable bytes at offset {exc.start}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from exc
    return parse_config(data, base_dir=p.resolve().parent, env=env, source=p)

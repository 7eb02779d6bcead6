"""Configuration reloads (SIGHUP, ``systemctl reload``): :class:`ConfigReloader` re-reads the file and applies the
broker settings that can change at runtime (:data:`LIVE_MQTT_KEYS`); every other change is named as needing a
restart."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any, Callable, Mapping

from edge.config import security_warnings
from edge.daemon.auditing import _sha256_or_none
from edge.errors import EdgeError
from edge.metrics import Counters

if TYPE_CHECKING:  # pragma: no cover - names for type checkers only
    from edge.config import EdgeConfig

log = logging.getLogger("edge.daemon")


#: ``[mqtt]`` keys a configuration reload (SIGHUP) applies to the running daemon; any other change is logged and
#: needs a restart.  Topics and QoS stay: subscribers and stored messages depend on them.
LIVE_MQTT_KEYS = frozenset({
    "host", "port", "brokers", "protocol", "client_id", "username", "password", "password_file", "keepalive_s",
    "clean_session", "session_expiry_s", "connect_timeout_s", "reconnect_min_delay_s", "reconnect_max_delay_s",
    "tls",
})


def credential_files(config: "EdgeConfig") -> dict[str, str | None]:
    """The SHA-256 of each broker credential file the configuration names (``mqtt.password_file``, and with TLS on
    ``mqtt.tls.ca_path``, ``cert_path`` and ``key_path``), by dotted key; None for a file that cannot be read.  A
    certificate or password rotated in place keeps the same path, so a reload compares these too."""
    m = config.mqtt
    paths = {"mqtt.password_file": m.password_file}
    if m.tls.enabled:
        paths.update({f"mqtt.tls.{k}": getattr(m.tls, k) for k in ("ca_path", "cert_path", "key_path")})
    return {k: _sha256_or_none(p) for k, p in paths.items() if p is not None}


def config_changes(old: "EdgeConfig", new: "EdgeConfig") -> list[str]:
    """Dotted names of the keys whose values differ between two configurations (``mqtt.port``, ...)."""
    out: list[str] = []
    for section in dataclasses.fields(old):
        if section.metadata.get("internal"):
            continue
        a, b = getattr(old, section.name), getattr(new, section.name)
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b):
            out += [f"{section.name}.{f.name}" for f in dataclasses.fields(a)
                    if getattr(a, f.name) != getattr(b, f.name)]
        elif a != b:
            out.append(section.name)
    return out


class ConfigReloader:
    """Applies a configuration reload to the running daemon (the main thread, at SIGHUP).

    Parameters
    ----------
    config : callable() -> EdgeConfig
        The configuration now.
    apply : callable(EdgeConfig)
        Makes the merged configuration the daemon's.
    switch_broker : callable(EdgeConfig)
        Switches the MQTT client to the new broker settings (:meth:`edge.publish.mqtt.MqttPublisher.switch_broker`).
    counters : Counters
        Where reloads and failures are counted.
    audit : callable(event, details)
        Writes an audit record.
    refused : callable(error)
        Makes a refused reload the status's ``last_error`` and publishes the status.
    """

    def __init__(self, *, config: Callable[[], "EdgeConfig"], apply: Callable[["EdgeConfig"], None],
                 switch_broker: Callable[["EdgeConfig"], None], counters: Counters,
                 audit: Callable[[str, Mapping[str, Any]], None], refused: Callable[[str], None]) -> None:
        self._config = config
        self._apply = apply
        self._switch_broker = switch_broker
        self._counters = counters
        self._audit = audit
        self._refused = refused
        self._credentials = credential_files(config())  # what the running client was built from

    def reload(self) -> bool:
        """Re-read the configuration file and apply what can change at runtime (SIGHUP; ``systemctl reload``).

        The broker connection settings (:data:`LIVE_MQTT_KEYS`) switch over without losing a message (see
        :meth:`edge.publish.mqtt.MqttPublisher.switch_broker`); other changed keys are logged by name as needing a
        restart and left as they are.  An unreadable or invalid file, or broker settings that cannot be loaded (a
        missing certificate), change nothing: the error is logged, counted (``config_reload_failures``) and published
        as the status's ``last_error``.  Returns whether the new broker settings (if any) were applied.
        """
        from edge.config import load_config

        config = self._config()
        path = config.source
        if path is None:
            log.warning("configuration reload ignored: the configuration was not read from a file")
            return False
        try:
            new = load_config(path)
            changed = config_changes(config, new)
            credentials = credential_files(new)
            rotated = sorted(k for k, v in credentials.items() if self._credentials.get(k, v) != v)
            if rotated:  # same path, new content: the client must be built again from the files
                log.info("configuration reload: %s changed on disk", ", ".join(rotated))
                changed += [k for k in ("mqtt.password_file", "mqtt.tls") if k not in changed and any(
                    r.startswith(k) for r in rotated)]
            live = [k for k in changed if k.startswith("mqtt.") and k[5:] in LIVE_MQTT_KEYS]
            later = [k for k in changed if k not in live]
            if later:
                log.warning("configuration reload: %s changed; restart the daemon to apply %s", ", ".join(later),
                            "it" if len(later) == 1 else "them")
            if not live:
                log.info("configuration reload: no broker setting changed")
                self._counters.incr("config_reloads")
                self._audit("config_reload", {"path": str(path), "sha256": _sha256_or_none(path),
                                              "verdict": "applied", "applied": [], "restart_needed": later,
                                              "security": list(security_warnings(config))})
                return True
            mqtt = dataclasses.replace(config.mqtt, **{k[5:]: getattr(new.mqtt, k[5:]) for k in live})
            merged = dataclasses.replace(config, mqtt=mqtt)
            self._switch_broker(merged)
        except (EdgeError, OSError, ValueError, RuntimeError) as exc:  # ssl.SSLError is an OSError
            self._counters.incr("config_reload_failures")
            error = f"configuration reload refused: {exc}"
            log.error("%s (the running settings stay)", error)
            self._audit("config_reload", {"path": str(path), "sha256": _sha256_or_none(path), "verdict": "refused",
                                          "reason": error})
            self._refused(error)  # the status's last_error, published
            return False
        self._apply(merged)
        self._credentials = credentials
        self._counters.incr("config_reloads")
        log.info("configuration reload: applied %s", ", ".join(live))
        self._audit("config_reload", {"path": str(path), "sha256": _sha256_or_none(path), "verdict": "applied",
                                      "applied": live, "restart_needed": later,
                                      "security": list(security_warnings(merged))})
        return True

"""The daemon's configuration schema: one frozen dataclass per TOML section, each field declared with :func:`_opt`
(its documentation, example and constraints in ``dataclasses.field(metadata=...)``), and the insecure settings
:func:`security_warnings` names.  :mod:`edge.config` loads files into these; :mod:`edge.config_example` prints them.
Import them from :mod:`edge.config`."""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "SECURITY_WARNINGS",
    "SECTIONS",
    "security_warnings",
    "field_hints",
    "fmt_choices",
    "toml_value",
    "split_broker_address",
    "REQUIRED",
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
    "LinesConfig",
    "EdgeConfig",
]

#: Marks a field without default (required) or without example.
REQUIRED = dataclasses.MISSING
#: A topic level (site, line, device id, prefix segment): no MQTT wildcards, separators or control characters.
_TOPIC_LEVEL_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_TOPIC_PREFIX_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}(/[A-Za-z0-9._-]{1,64}){0,7}$")


def _opt(
    default: Any = REQUIRED,
    doc: str = "",
    *,
    example: Any = REQUIRED,
    min: float | None = None,  # shadows the builtin on purpose: reads like the TOML
    max: float | None = None,  # (same)
    min_exclusive: bool = False,
    choices: tuple[Any, ...] | None = None,
    pattern: re.Pattern[str] | None = None,
    pattern_doc: str = "",
    must_exist: bool = False,
    missing_hint: str = "",
    secret: bool = False,
) -> Any:
    """Declare one configuration field with its documentation and constraints.

    ``missing_hint`` ends the error of a ``must_exist`` file that is missing (``{path}`` is replaced by its path).
    ``secret``: the value stays out of the dataclass's repr (what ``spectro-edge -v config --validate`` prints).
    """
    meta = {
        "doc": doc,
        "example": example,
        "min": min,
        "max": max,
        "min_exclusive": min_exclusive,
        "choices": choices,
        "pattern": pattern,
        "pattern_doc": pattern_doc,
        "must_exist": must_exist,
        "missing_hint": missing_hint,
    }
    if default is REQUIRED:
        return field(metadata=meta, repr=not secret)
    if isinstance(default, (list, dict, set)):  # pragma: no cover - defensive
        raise TypeError("mutable defaults are not allowed in frozen configs")
    return field(default=default, metadata=meta, repr=not secret)


# --------------------------------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class DeviceConfig:
    """Identity of this device; the three levels become MQTT topic levels."""

    site: str = _opt(doc="plant or site name (one MQTT topic level)", example="plant-a",
                     pattern=_TOPIC_LEVEL_RE, pattern_doc="1-64 characters from A-Z a-z 0-9 . _ -")
    line: str = _opt(doc="production line (one MQTT topic level)", example="line-3",
                     pattern=_TOPIC_LEVEL_RE, pattern_doc="1-64 characters from A-Z a-z 0-9 . _ -")
    device_id: str = _opt(doc="device id, unique within the line (one MQTT topic level)", example="nir-01",
                          pattern=_TOPIC_LEVEL_RE, pattern_doc="1-64 characters from A-Z a-z 0-9 . _ -")
    forward_annotations: bool = _opt(False, "forward a simulator's reference values (ANNOTATION frames) as "
                                            "`reference` in prediction messages (test benches only)")


@dataclass(frozen=True)
class SerialConfig:
    """Serial link to the spectrometer (any pyserial URL: a device path, ``socket://``, ``loop://``, ``spy://``)."""

    port_url: str = _opt(doc="pyserial port URL or device path", example="/dev/ttyUSB0")
    baudrate: int = _opt(115200, "baud rate", min=1, max=20_000_000)
    read_timeout_s: float = _opt(0.1, "read timeout of one serial read", min=0.0, min_exclusive=True, max=60.0)
    reconnect_min_delay_s: float = _opt(0.1, "first delay before reopening a vanished port", min=0.0, max=600.0)
    reconnect_max_delay_s: float = _opt(2.0, "longest delay between reopen attempts (exponential backoff)",
                                        min=0.0, max=3600.0)


@dataclass(frozen=True)
class BundleConfig:
    """The model bundle to serve and how to verify it."""

    path: Path = _opt(doc="model bundle file", example="/var/lib/spectrolite/model.bundle")
    public_key_path: Path | None = _opt(
        None, "Ed25519 public key; when set, only bundles signed with the matching key are loaded (make the key "
        "pair in the lab with `spectro-train keygen DIR`, sign bundles with `spectro-train sign BUNDLE --key "
        "DIR/spectrolite.key.pem` and copy DIR/spectrolite.pub.pem here)",
        must_exist=True, example="/etc/spectrolite/bundle-signing.pub.pem",
        missing_hint="make the key pair in the lab with `spectro-train keygen DIR` and copy DIR/spectrolite.pub.pem "
        "to {path}")
    watch: bool = _opt(True, "reload the bundle when the file changes (verified and self-tested first)")
    watch_interval_s: float = _opt(2.0, "how often the bundle file is checked for changes",
                                   min=0.0, min_exclusive=True, max=3600.0)
    self_test: bool = _opt(True, "run the bundle's golden vectors before serving it")
    min_reload_interval_s: float = _opt(
        10.0, "at most one model change (bundle swapped in) per this many seconds: a reload command sooner is "
        "refused (answered and counted), a file change waits; a refused bundle does not count; a reload of the bytes "
        "in service is a no-op either way; 0 disables the limit",
        min=0.0, max=86_400.0)
    allow_rollback: bool = _opt(
        False, "accept a signed bundle older than the newest one of the same model_id served on this device (by "
        "model_version, then created_utc; remembered across restarts beside the outbox); false refuses it, at a "
        "reload and at start")
    persist: bool = _opt(
        True, "write a bundle put in service from another file (reload_bundle with a path, a challenger's promotion) "
        "over this path, the file there kept as <name>.previous, so that a restart serves it; false leaves this file "
        "alone: a restart serves it again, and with signed bundles the anti-rollback guard then refuses it when it "
        "is older (the daemon does not start)")


@dataclass(frozen=True)
class ReferencesConfig:
    """Dark and white reference spectra: initial files and how old they may get."""

    dark_path: Path | None = _opt(None, "dark spectrum file loaded at start unless a capture of an earlier run was "
                                  "kept (a missing file is named in a WARNING); an .npz path is also where captures "
                                  "are written, else beside the outbox",
                                  example="/var/lib/spectrolite/dark.npz")
    white_path: Path | None = _opt(None, "white reference file, as dark_path",
                                   example="/var/lib/spectrolite/white.npz")
    max_age_s: float = _opt(28_800.0, "references older than this flag predictions 'stale_reference'",
                            min=0.0, min_exclusive=True)


@dataclass(frozen=True)
class RuntimeConfig:
    """Inference runtime."""

    num_threads: int = _opt(1, "threads of the TFLite interpreter", min=1, max=64)


@dataclass(frozen=True)
class QueuesConfig:
    """Bounded queues between the reader, inference and publishing threads."""

    frames_max: int = _opt(256, "frames waiting for inference", min=1, max=1_000_000)
    messages_max: int = _opt(1024, "metrics, status and command responses waiting to be stored in the outbox "
                             "(predictions are stored by the inference thread itself)", min=1, max=1_000_000)
    policy: str = _opt("drop_oldest", "what the full frames queue does: drop its oldest item, drop the new item, or "
                       "block the reader (every drop is counted); the messages queue always blocks its producer",
                       choices=("drop_oldest", "drop_newest", "block"))


@dataclass(frozen=True)
class TlsConfig:
    """TLS towards the broker: server verification with a CA file and optional client certificate."""

    enabled: bool = _opt(False, "connect with TLS (usually port 8883)", example=True)
    ca_path: Path | None = _opt(None, "CA certificate(s) that signed the broker's certificate; "
                                "unset uses the system trust store", must_exist=True, example="/etc/spectrolite/ca.pem")
    cert_path: Path | None = _opt(None, "client certificate (PEM) for mutual TLS", must_exist=True,
                                  example="/etc/spectrolite/nir-01.pem")
    key_path: Path | None = _opt(None, "private key of the client certificate (PEM)", must_exist=True,
                                 example="/etc/spectrolite/nir-01.key")
    check_hostname: bool = _opt(True, "verify that the broker certificate names mqtt.host")


def split_broker_address(text: str) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:1883"`` for an IPv6 address) as ``(host, port)``.

    >>> split_broker_address("broker-b.plant:8883")
    ('broker-b.plant', 8883)
    >>> split_broker_address("[fd00::7]:1883")
    ('fd00::7', 1883)

    Raises
    ------
    ValueError
        Not ``host:port`` with a port of 1-65535.
    """
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if not sep or not host or any(c.isspace() or c in "/[]" for c in host) or (":" in host and not bracketed) \
            or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected host:port with a port of 1-65535 ([address]:port for IPv6), got {text!r}")
    return host, int(port)


@dataclass(frozen=True)
class MqttConfig:
    """Broker connection, session and topics."""

    host: str = _opt("localhost", "broker host name or address")
    port: int = _opt(1883, "broker port (1883 plain, 8883 TLS)", min=1, max=65535, example=8883)
    brokers: tuple[str, ...] = _opt((), "several broker addresses, e.g. [\"node-a:1883\", \"node-b:1883\"] (the "
                                    "nodes of a cluster; [address]:port for IPv6), used instead of host and port: "
                                    "the daemon connects to the first and, whenever a connection is lost or an "
                                    "attempt fails, tries the next one (round robin, after the jittered reconnect "
                                    "delay); empty means host and port")
    protocol: str = _opt("3.1.1", "MQTT protocol version", choices=("3.1.1", "5"))
    qos: int = _opt(1, "QoS of published messages (1: at least once, the store-and-forward default)",
                    choices=(0, 1, 2))
    client_id: str = _opt("", "client id; empty means 'spectrolite-<device_id>' (must be stable for a "
                          "persistent session)", pattern=re.compile(r"^[A-Za-z0-9._-]{0,128}$"),
                          pattern_doc="0-128 characters from A-Z a-z 0-9 . _ -")
    username: str | None = _opt(None, "user name for broker authentication", example="nir-01")
    password: str | None = _opt(None, "password (prefer password_file or SPECTROLITE__MQTT__PASSWORD)", secret=True)
    password_file: Path | None = _opt(None, "file whose first line is the password", must_exist=True,
                                      example="/etc/spectrolite/mqtt.password")
    keepalive_s: int = _opt(30, "MQTT keepalive", min=5, max=65535)
    clean_session: bool = _opt(False, "false keeps a persistent session (queued commands survive an outage)")
    session_expiry_s: int = _opt(604_800, "MQTT 5 session expiry interval for a persistent session",
                                 min=0, max=4_294_967_295)
    topic_prefix: str = _opt("spectrolite", "first topic level(s): <prefix>/<site>/<line>/<device>/<kind>",
                             pattern=_TOPIC_PREFIX_RE,
                             pattern_doc="1-8 levels of A-Z a-z 0-9 . _ - separated by '/', no wildcards")
    connect_timeout_s: float = _opt(10.0, "time allowed for the TCP/TLS connection and CONNACK",
                                    min=0.0, min_exclusive=True, max=600.0)
    reconnect_min_delay_s: int = _opt(1, "first reconnect delay (doubles up to the maximum)", min=1, max=3600)
    reconnect_max_delay_s: int = _opt(60, "longest reconnect delay", min=1, max=86_400)
    tls: TlsConfig = field(default_factory=TlsConfig, metadata={"doc": "TLS settings"})

    def addresses(self) -> tuple[tuple[str, int], ...]:
        """The brokers to connect to, in order: ``brokers`` when set, else ``host`` and ``port``."""
        if self.brokers:
            return tuple(split_broker_address(b) for b in self.brokers)
        return ((self.host, self.port),)


@dataclass(frozen=True)
class OutboxConfig:
    """Durable on-disk outbox (SQLite WAL) every outgoing message passes through."""

    path: Path = _opt(Path("outbox.sqlite"), "SQLite database of messages not yet acknowledged by the broker",
                      example="/var/lib/spectrolite/outbox.sqlite")
    max_messages: int = _opt(1_000_000, "bound on stored messages", min=1, max=1_000_000_000)
    max_bytes: int = _opt(268_435_456, "bound on stored topic+payload bytes", min=1024, max=1 << 44)
    full_policy: str = _opt("drop_oldest", "when full: 'drop_oldest' evicts the oldest lowest-priority messages "
                            "(metrics, then predictions; never ones more important than the new message); "
                            "'refuse_new' keeps the backlog and refuses new messages",
                            choices=("drop_oldest", "refuse_new"))
    drain_rate_msgs_per_s: float = _opt(200.0, "rate at which a backlog is replayed after an outage "
                                        "(live messages are not limited); 0 means unlimited", min=0.0)
    max_inflight: int = _opt(64, "messages handed to the broker and not yet acknowledged", min=1, max=65535)
    synchronous: str = _opt("normal", "SQLite synchronous mode: 'normal' survives a process crash (kill -9), "
                            "'full' also a power cut at the cost of an fsync per message",
                            choices=("normal", "full"))
    flush_timeout_s: float = _opt(10.0, "on shutdown, time allowed to deliver the backlog before going offline",
                                  min=0.0, max=3600.0)


@dataclass(frozen=True)
class CommandsConfig:
    """Remote commands on ``.../cmd/<name>``: what is accepted and how it is authenticated."""

    enabled: bool = _opt(False, "subscribe to and execute commands (capture references, set the integration time, "
                         "reload the bundle); off by default, and on they need commands.hmac_key_path unless "
                         "require_auth is false")
    require_auth: bool = _opt(True, "refuse commands without a valid HMAC-SHA256; false accepts unsigned commands "
                              "from anyone who may publish on .../cmd/+ (an explicit opt-out for test benches, named "
                              "in a WARNING at start and in the status)")
    hmac_key_path: Path | None = _opt(None, "file holding the shared HMAC key (at least 16 bytes); create it with "
                                      "`spectro-edge keys hmac --out FILE` and give the same file to whoever signs "
                                      "commands (`spectro-edge sign-command`)",
                                      must_exist=True, example="/etc/spectrolite/hmac.key",
                                      missing_hint="create it with `spectro-edge keys hmac --out {path}`")
    max_payload_bytes: int = _opt(4096, "larger command payloads are refused unread", min=64, max=1_048_576)
    max_clock_skew_s: float = _opt(300.0, "every command, signed or not, must be issued within this many seconds of "
                                   "the device clock (either way); at least max_age_s",
                                   min=1.0, max=86_400.0)
    max_age_s: float = _opt(60.0, "every command must carry issued_at_unix_s; one delivered more than this many "
                            "seconds after it was issued (queued in the broker during an outage) is refused: for "
                            "unsigned commands this stops stale commands, not forged ones; max_clock_skew_s is checked "
                            "first, so the smaller of the two applies", min=1.0, max=86_400.0)
    allowed_dirs: tuple[Path, ...] = _opt((), "directories a command may read bundles from; empty means the "
                                          "directory of bundle.path")
    max_capture_frames: int = _opt(256, "upper bound of average_frames in capture commands", min=1, max=100_000)


@dataclass(frozen=True)
class DriftConfig:
    """Windowed drift detection over OOD statistics and predictions, with hysteresis."""

    window_frames: int = _opt(200, "sets the persistence of the EWMA alerts: one is raised (or cleared) after "
                              "max(1, window_frames // 20) frames in a row past its level", min=2, max=1_000_000)
    ewma_alpha: float = _opt(0.05, "smoothing factor of the EWMA of each OOD statistic (the detector temperature's "
                             "EWMA uses 0.2)",
                             min=0.0, min_exclusive=True, max=1.0)
    raise_ratio: float = _opt(1.0, "raise an alert when the smoothed statistic / its training limit exceeds this",
                              min=0.0, min_exclusive=True)
    clear_ratio: float = _opt(0.8, "clear it when the ratio falls below this (must be below raise_ratio)",
                              min=0.0, min_exclusive=True)
    min_frames: int = _opt(50, "frames seen before any alert can be raised (warm-up)", min=0)
    cusum_k_sigma: float = _opt(0.5, "CUSUM slack on standardised predictions, in standard deviations (the line's, "
                                "learned over cusum_baseline_frames; the bundle's training ones when that is 0)",
                                min=0.0)
    cusum_h_sigma: float = _opt(8.0, "CUSUM decision threshold, in the same standard deviations",
                                min=0.0, min_exclusive=True)
    cusum_baseline_frames: int = _opt(500, "self-starting prediction CUSUM: learn each target's in-control mean "
                                      "and spread from the first this many predictions after a start or a model "
                                      "change (meanwhile each one is judged against those before it), then freeze "
                                      "them; 0: use the bundle's figures (docs/daemon.md)", min=0, max=1_000_000)
    spectrum_level_h_sigma: float = _opt(12.0, "self-starting CUSUM of each spectrum's level before the scatter "
                                         "corrections (the mean absorbance over the model's range, which SNV and "
                                         "derivatives hide from the model: a baseline offset, a lamp losing light): "
                                         "decision threshold in learned standard deviations, slack cusum_k_sigma; "
                                         "0: off (docs/daemon.md)", min=0.0, max=1000.0)
    spectrum_level_baseline_frames: int = _opt(500, "spectra the spectrum_level CUSUM learns the line's in-control "
                                               "level and spread from after a start or a model change, then "
                                               "freezes them", min=20, max=1_000_000)
    dark_level_max_fraction: float = _opt(0.2, "instrument alert when the mean dark exceeds this fraction of "
                                          "full scale", min=0.0, max=1.0)
    reference_min_fraction: float = _opt(0.1, "instrument alert when the mean white reference falls below "
                                         "this fraction of full scale", min=0.0, max=1.0)
    detector_temp_max_c: float = _opt(60.0, "instrument alert above this detector temperature",
                                      min=-273.15, max=500.0)


@dataclass(frozen=True)
class MetricsConfig:
    """Periodic ``.../metrics`` messages, and the optional Prometheus endpoint serving the same figures."""

    period_s: float = _opt(30.0, "interval between metrics messages", min=0.0, min_exclusive=True, max=86_400.0)
    prometheus_port: int = _opt(0, "serve the metrics to Prometheus at http://<prometheus_bind>:<port>/metrics "
                                "(0: off; needs the prometheus extra)", min=0, max=65535)
    prometheus_bind: str = _opt("127.0.0.1", "address the Prometheus endpoint listens on (127.0.0.1: this host "
                                "only; 0.0.0.0 or the LAN address for a remote Prometheus, behind a firewall)")


@dataclass(frozen=True)
class HomeAssistantConfig:
    """Home Assistant MQTT discovery: retained entity configurations published at every connect."""

    enabled: bool = _opt(False, "publish discovery configurations (one sensor per target, quality, out of "
                         "distribution, alerts) so Home Assistant adds the device by itself")
    discovery_prefix: str = _opt("homeassistant", "Home Assistant's discovery prefix (its MQTT integration setting)",
                                 pattern=_TOPIC_PREFIX_RE, pattern_doc="1-8 topic levels of A-Z a-z 0-9 . _ -")


@dataclass(frozen=True)
class OpcUaConfig:
    """Optional OPC UA server: each target's latest value, interval and quality and the status as read-only nodes
    (``edge.opcua``; docs/daemon.md)."""

    enabled: bool = _opt(False, "serve the predictions and the status at opc.tcp://<host>:<port>/ (needs the opcua "
                         "extra; no OPC UA security: see docs/security.md)")
    host: str = _opt("127.0.0.1", "address the OPC UA server listens on (127.0.0.1: this host only; the LAN "
                     "address for a control system, behind a firewall)")
    port: int = _opt(4840, "TCP port of the OPC UA server (4840: the OPC UA default)", min=1, max=65535)
    namespace: str = _opt("", "namespace URI of the device's nodes; empty means urn:spectrolite:<device_id>")


@dataclass(frozen=True)
class AuditConfig:
    """Audit trail: an append-only, hash-chained log of what the daemon did (``edge.audit``; docs/security.md)."""

    enabled: bool = _opt(True, "record starts, bundle loads and reloads, commands and their verdicts, configuration "
                         "reloads, alerts and stops in the audit log")
    path: Path | None = _opt(None, "directory of the audit log files; unset means the directory 'audit' beside "
                             "outbox.path", example="/var/lib/spectrolite/audit")
    max_bytes: int = _opt(1_048_576, "a log file is rotated before it grows past this size", min=4096,
                          max=1 << 34)
    keep_files: int = _opt(10, "log files kept, the one being written included; the oldest are deleted beyond "
                           "this (forward or export the log before they are)", min=1, max=100_000)


@dataclass(frozen=True)
class ControlStandardConfig:
    """One check standard (``[[control.standards]]``): a sample of known value measured now and then."""

    name: str = _opt(doc="the standard's name (commands and messages use it)", example="check-A",
                     pattern=re.compile(r"^[A-Za-z0-9._-]{1,48}$"), pattern_doc="1-48 of A-Z a-z 0-9 . _ -")
    target: str = _opt(doc="the bundle target the standard's known value is of", example="assay_mg")
    value: float = _opt(doc="the standard's known value, in the target's unit", example=200.0)
    sigma: float = _opt(doc="the measurement's standard deviation on this standard (the lab's repeatability), in the "
                        "target's unit", example=1.5, min=0.0, min_exclusive=True)
    warning_sigmas: float = _opt(2.0, "Shewhart warning limit, in sigmas", min=0.0, min_exclusive=True, max=100.0)
    action_sigmas: float = _opt(3.0, "Shewhart action limit (out of control), in sigmas; above warning_sigmas",
                                min=0.0, min_exclusive=True, max=100.0)


@dataclass(frozen=True)
class ControlConfig:
    """``[control]``: check standards the ``measure_control`` command measures."""

    standards: tuple[ControlStandardConfig, ...] = _opt((), "the check standards, one [[control.standards]] table "
                                                        "each (name, target, value, sigma)")


@dataclass(frozen=True)
class ArchiveConfig:
    """Archive of raw spectra with their predictions, for calibration updates (``edge.archive``; docs/daemon.md)."""

    enabled: bool = _opt(False, "keep spectra as received, with references, predictions and sample tags, in an "
                         "on-disk archive (written on a background thread; never slows inference)")
    path: Path | None = _opt(None, "SQLite file of the archive; unset means 'archive.sqlite' beside outbox.path",
                             example="/var/lib/spectrolite/archive.sqlite")
    policy: str = _opt("all", "which spectra are kept: 'all', 'every_nth' (every every_n-th), 'flagged' (quality "
                       "not ok, out of distribution, or rejected) or 'tagged' (only around a tag_sample command: "
                       "window_frames before and after); a tagged spectrum is always kept",
                       choices=("all", "every_nth", "flagged", "tagged"))
    every_n: int = _opt(10, "with policy 'every_nth', keep one spectrum in this many", min=1, max=1_000_000)
    max_bytes: int = _opt(1_073_741_824, "bound on stored bytes (spectra, references, predictions); the oldest "
                          "spectra are evicted beyond it", min=65_536, max=1 << 44)
    max_age_days: float = _opt(90.0, "spectra older than this are evicted", min=0.0, min_exclusive=True,
                               max=36_500.0)
    window_frames: int = _opt(5, "with policy 'tagged', spectra kept before and after the tagged ones", min=0,
                              max=10_000)
    queue_max: int = _opt(1024, "records waiting for the archive writer; beyond it records are dropped "
                          "(archive_dropped), never frames", min=1, max=1_000_000)


@dataclass(frozen=True)
class DeployConfig:
    """[deploy]: bundles sent over MQTT in signed chunks (deploy_begin, deploy_chunk, deploy_commit)."""

    enabled: bool = _opt(False, "accept bundles sent over MQTT in chunks (needs commands.enabled); each must be "
                         "signed (Ed25519) by a trusted key whatever bundle.public_key_path says, and is installed "
                         "through the verified reload (self-test, device fit, anti-rollback)")
    groups: tuple[str, ...] = _opt((), "groups this device also takes deployments for, each 1-4 topic levels (e.g. "
                                   "\"plant-a\", \"plant-a/line-1\", \"fleet\"): commands on "
                                   "<prefix>/group/<group>/cmd/deploy_* reach every member")
    trusted_keys: tuple[Path, ...] = _opt((), "Ed25519 public keys (PEM) a sent bundle may be signed with; empty "
                                          "means bundle.public_key_path, which must then be set; with "
                                          "bundle.public_key_path set, leave this empty (that key decides)")
    max_bundle_bytes: int = _opt(16_777_216, "larger transfers are refused at deploy_begin", min=1024,
                                 max=1_073_741_824)
    max_chunk_bytes: int = _opt(32_768, "largest chunk_size a transfer may use (a chunk travels base64-encoded in "
                                "one signed command)", min=256, max=262_144)
    persist: bool = _opt(True, "copy an installed bundle over bundle.path so a restart serves it (the file "
                         "replaced is kept as <bundle.path>.previous); false serves it until the next restart")


@dataclass(frozen=True)
class LinesConfig:
    """[lines]: how the predictions of a LINE frame (a push-broom line of many spectra) are published."""

    publish: str = _opt("line", "'line': one .../line_prediction message per LINE frame, its predictions as arrays "
                        "(one outbox row per line: what a push-broom camera's hundreds of spectra per line need); "
                        "'spectrum': one .../prediction message per spectrum, as for SPECTRUM frames (each with "
                        "its place in the line)", choices=("line", "spectrum"))


@dataclass(frozen=True)
class EdgeConfig:
    """Whole daemon configuration (see the module docstring for the file format)."""

    device: DeviceConfig
    serial: SerialConfig
    bundle: BundleConfig
    references: ReferencesConfig = field(default_factory=ReferencesConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    queues: QueuesConfig = field(default_factory=QueuesConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    commands: CommandsConfig = field(default_factory=CommandsConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    opcua: OpcUaConfig = field(default_factory=OpcUaConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    lines: LinesConfig = field(default_factory=LinesConfig)
    log_level: str = _opt("INFO", "logging level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    source: Path | None = field(default=None, compare=False,
                                metadata={"doc": "file the configuration was read from (not a key)",
                                          "internal": True})


#: Insecure settings the daemon names at start (WARNING) and in its retained status (``security``), with the fix.
SECURITY_WARNINGS: dict[str, str] = {
    "commands_unauthenticated": "commands are accepted without an HMAC (commands.require_auth = false: remove it "
    "and set commands.hmac_key_path, or set commands.enabled = false)",
    "mqtt_plaintext": "MQTT without TLS: predictions and commands travel in clear text (set mqtt.tls.enabled)",
    "mqtt_anonymous": "MQTT without a user name: the broker cannot tell this device apart (set mqtt.username)",
    "bundles_unsigned": "bundles are loaded without a signature check (set bundle.public_key_path)",
}


def security_warnings(config: EdgeConfig) -> tuple[str, ...]:
    """Names (keys of :data:`SECURITY_WARNINGS`) of the insecure settings of ``config``, in a fixed order."""
    found = []
    if config.commands.enabled and not config.commands.require_auth:
        found.append("commands_unauthenticated")
    if not config.mqtt.tls.enabled:
        found.append("mqtt_plaintext")
    if config.mqtt.username is None:
        found.append("mqtt_anonymous")
    if config.bundle.public_key_path is None:
        found.append("bundles_unsigned")
    return tuple(found)


#: Every section, by its TOML name, in the order the example prints them.
SECTIONS: dict[str, type] = {
    "device": DeviceConfig, "serial": SerialConfig, "bundle": BundleConfig, "references": ReferencesConfig,
    "runtime": RuntimeConfig, "queues": QueuesConfig, "mqtt": MqttConfig, "outbox": OutboxConfig,
    "commands": CommandsConfig, "drift": DriftConfig, "metrics": MetricsConfig, "audit": AuditConfig,
    "homeassistant": HomeAssistantConfig, "archive": ArchiveConfig, "opcua": OpcUaConfig,
    "control": ControlConfig, "deploy": DeployConfig,
    "lines": LinesConfig,
}


# ---------------------------------------------------------------------------------------- field helpers


def field_hints(cls: type) -> dict[str, Any]:
    """The resolved type of each field of dataclass ``cls``."""
    return typing.get_type_hints(cls)


def fmt_choices(choices: tuple[Any, ...]) -> str:
    items = [repr(c) if isinstance(c, str) else str(c) for c in choices]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


#: A TOML basic string escapes ``\\`` and ``"``, and holds no control character raw.
_TOML_ESCAPES = {**{c: f"\\u{c:04x}" for c in (*range(0x20), 0x7F)}, ord("\\"): "\\\\", ord('"'): '\\"'}


def toml_value(value: Any) -> str:
    """``value`` (bool, int, float, str, Path, tuple or list of them) as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, (Path, str)):
        return '"' + str(value).translate(_TOML_ESCAPES) + '"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")

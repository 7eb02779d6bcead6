"""Remote commands received on ``.../cmd/<name>``: strict parsing, HMAC authentication, replay and path checks.

API (stable; the daemon parses every incoming command with this and answers on ``.../cmd/<name>/response``)::

    parser = CommandParser(cfg.commands, device_id=cfg.device.device_id)
    cmd = parser.parse(name, payload: bytes) -> RemoteCommand      # raises CommandError("<why>")
    CommandParser.peek_request_id(payload) -> str | None            # for the error response of a refused command
    make_command(name, args, *, device_id, ...) -> dict             # client side: build a body
    sign_command(body, key) -> bytes                                # client side: wrap it in an HMAC envelope
    load_hmac_key(path) -> bytes

Commands (``args`` of each, all optional; unknown fields are refused):

=========================  ============================================================================
``reload_bundle``          ``{"path": str}``: a bundle inside ``commands.allowed_dirs`` (default: the
                           configured ``bundle.path``); the daemon verifies and self-tests it first
``capture_dark``           ``{"average_frames": int}`` (1..``commands.max_capture_frames``, default 16)
``capture_reference``      ``{"average_frames": int}`` (white reference, same bounds)
``set_integration_time``   ``{"integration_time_us": int}`` (required, 1..60,000,000)
``tag_sample``             ``{"sample_id": str, "frames": int}``: the next ``frames`` (1..1000, default 1)
                           archived spectra are those of lab sample ``sample_id`` (required; 1-64
                           printable ASCII characters, no leading or trailing space); needs ``[archive]``
``measure_control``        ``{"name": str, "frames": int}``: the next ``frames`` (1..1000, default 1)
                           predictions measure the ``[[control.standards]]`` standard ``name`` (required)
``reset_drift``            ``{"detectors": [str], "reason": str}``: the self-starting drift detectors learn
                           their baselines again (:mod:`edge.drift.reset`; both optional, default: all)
``deploy_begin``,          a bundle sent in chunks (:mod:`edge.deploy.args`; ``[deploy]``, docs/daemon.md); also
``deploy_chunk``,          accepted on the group topics ``<prefix>/group/<group>/cmd/<name>`` of ``deploy.groups``,
``deploy_commit``,         with ``device_id`` ``"group:<group>"``; ``deploy_rollback`` returns to the bundle that
``deploy_rollback``        served before an installed transfer (:mod:`edge.daemon.probation`)
``load_challenger``        ``{"path": str, "promote": {rule}}``: run a second bundle in shadow mode
                           (:mod:`edge.shadow`; ``promote`` optional); ``promote_challenger`` and
                           ``drop_challenger`` take no arguments; ``reference_value`` ``{"seq": int,
                           "values": {target: number}, "device_boot_id": int}`` (lab values for RMSEP)
=========================  ============================================================================

Wire format.  An unsigned command is a JSON object (the *body*)::

    {"schema_version": 1, "command": "capture_dark", "device_id": "nir-01", "request_id": "r-17",
     "issued_at_unix_s": 1767225600.0, "nonce": "5f1c2a9e0b7d4c3a", "args": {"average_frames": 32}}

A signed command wraps the body's exact text in an envelope, so no canonical JSON form is needed::

    {"body": "<the body above as a JSON string>", "hmac_sha256": "<hex HMAC-SHA256(key, body as UTF-8)>"}

``command`` must equal the topic's command name and ``device_id`` this device, so a signature cannot be
replayed on another command or device.  Every body needs ``issued_at_unix_s``: within
``commands.max_clock_skew_s`` of the device clock, and a command more than ``commands.max_age_s`` old is refused
(:class:`~edge.errors.StaleCommandError`: it waited in the broker's persistent session during an outage; for an
unsigned command, whose time anyone can write, this stops stale commands, not forged ones).  Signed bodies also need
a ``nonce`` not seen within the skew window.  Signatures are
compared in constant time (:func:`hmac.compare_digest`).  Payloads over ``commands.max_payload_bytes`` are
refused before being parsed; JSON with duplicate keys, NaN or deep nesting is refused.  Nothing here runs a
shell or opens a file for writing; paths are resolved (symlinks included) and must lie inside an allowed
directory.

>>> from edge.config import CommandsConfig
>>> body = make_command("capture_dark", {"average_frames": 8}, device_id="nir-01", request_id="r1")
>>> unsigned = json.dumps(body).encode()
>>> CommandParser(CommandsConfig(), device_id="nir-01").parse("capture_dark", unsigned)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
edge.errors.CommandError: payload: expected an HMAC-SHA256 envelope ...: commands.require_auth is true
>>> cfg = CommandsConfig(require_auth=False, allowed_dirs=(Path("/srv/bundles"),))  # the explicit opt-out
>>> p = CommandParser(cfg, device_id="nir-01")
>>> p.parse("capture_dark", unsigned).args
CaptureArgs(average_frames=8)
>>> bad = make_command("capture_dark", {"average_frames": 0}, device_id="nir-01")
>>> p.parse("capture_dark", json.dumps(bad).encode())
Traceback (most recent call last):
...
edge.errors.CommandError: capture_dark.args.average_frames: expected an integer in 1..256, got 0
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from edge.deploy.args import DEPLOY_COMMANDS, DeployArgs, parse_deploy_args
from edge.drift.reset import ResetDriftArgs, parse_reset_drift_args
from edge.errors import CommandError, StaleCommandError
from edge.jsonstrict import loads_strict
from edge.shadow import LoadChallengerArgs, NoArgs, PromoteArgs, ReferenceValueArgs, parse_shadow_args
from edge.validation import is_number, require, require_fields, require_int, require_mapping, require_str

if TYPE_CHECKING:
    from edge.config import CommandsConfig

__all__ = [
    "COMMAND_SCHEMA_VERSION",
    "CommandName",
    "ReloadBundleArgs",
    "CaptureArgs",
    "SetIntegrationTimeArgs",
    "TagSampleArgs",
    "MeasureControlArgs",
    "CommandArgs",
    "RemoteCommand",
    "CommandParser",
    "make_command",
    "sign_command",
    "load_hmac_key",
    "INTEGRATION_TIME_US_MAX",
    "DEFAULT_AVERAGE_FRAMES",
    "MIN_HMAC_KEY_BYTES",
    "MAX_TAG_FRAMES",
]

#: Version of the command body schema.
COMMAND_SCHEMA_VERSION = 1
#: Longest accepted integration time, microseconds (60 s).
INTEGRATION_TIME_US_MAX = 60_000_000
#: Frames averaged by a capture command that does not say.
DEFAULT_AVERAGE_FRAMES = 16
#: Shortest accepted HMAC key.
MIN_HMAC_KEY_BYTES = 16
#: Most spectra one ``tag_sample`` command tags.
MAX_TAG_FRAMES = 1000
#: Most nonces remembered for replay protection (older ones expire with the clock-skew window anyway).
MAX_REMEMBERED_NONCES = 10_000

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_HEX64_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_SAMPLE_ID_RE = re.compile(r"^[!-~](?:[ -~]{0,62}[!-~])?$")  # printable ASCII, no space at either end
_STANDARD_RE = re.compile(r"^[A-Za-z0-9._-]{1,48}$")  # as control.standards.name
_MAX_PATH_CHARS = 1024
_BODY_KEYS = {"schema_version", "command", "device_id", "request_id", "issued_at_unix_s", "nonce", "args"}


class CommandName(str, enum.Enum):
    """Commands the daemon understands (the last level of ``.../cmd/<name>``)."""

    RELOAD_BUNDLE = "reload_bundle"
    CAPTURE_DARK = "capture_dark"
    CAPTURE_REFERENCE = "capture_reference"
    SET_INTEGRATION_TIME = "set_integration_time"
    TAG_SAMPLE = "tag_sample"
    MEASURE_CONTROL = "measure_control"
    DEPLOY_BEGIN = "deploy_begin"
    DEPLOY_CHUNK = "deploy_chunk"
    DEPLOY_COMMIT = "deploy_commit"
    DEPLOY_ROLLBACK = "deploy_rollback"
    LOAD_CHALLENGER = "load_challenger"  # shadow mode (edge.shadow, edge.daemon.shadow)
    PROMOTE_CHALLENGER = "promote_challenger"
    DROP_CHALLENGER = "drop_challenger"
    REFERENCE_VALUE = "reference_value"
    RESET_DRIFT = "reset_drift"  # learn the self-starting drift baselines again (edge.drift.reset)


_SHADOW_COMMANDS = (CommandName.LOAD_CHALLENGER, CommandName.PROMOTE_CHALLENGER, CommandName.DROP_CHALLENGER,
                    CommandName.REFERENCE_VALUE)


@dataclass(frozen=True)
class ReloadBundleArgs:
    """Load ``path`` (resolved, inside an allowed directory) or, when None, the configured bundle again."""

    path: Path | None


@dataclass(frozen=True)
class CaptureArgs:
    """Capture a dark or white reference averaged over ``average_frames`` frames."""

    average_frames: int


@dataclass(frozen=True)
class SetIntegrationTimeArgs:
    """Set the detector integration time, microseconds."""

    integration_time_us: int


@dataclass(frozen=True)
class TagSampleArgs:
    """The next ``frames`` archived spectra are those of lab sample ``sample_id`` (:meth:`edge.archive.Archive.tag`)."""

    sample_id: str
    frames: int


@dataclass(frozen=True)
class MeasureControlArgs:
    """The next ``frames`` predictions measure check standard ``name`` (:mod:`edge.control_samples`)."""

    name: str
    frames: int


CommandArgs = Union[ReloadBundleArgs, CaptureArgs, SetIntegrationTimeArgs, TagSampleArgs, MeasureControlArgs,
                    DeployArgs, LoadChallengerArgs, NoArgs, PromoteArgs, ReferenceValueArgs, ResetDriftArgs]


@dataclass(frozen=True)
class RemoteCommand:
    """A validated command, ready to execute."""

    name: CommandName
    args: CommandArgs
    request_id: str | None
    authenticated: bool  #: True when it carried a valid HMAC
    issued_at_unix_s: float | None


def load_hmac_key(path: str | os.PathLike[str]) -> bytes:
    """Read a shared HMAC key: the file's bytes with surrounding whitespace removed (at least 16 bytes).

    Raises
    ------
    CommandError
        The file cannot be read or the key is too short.
    """
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise CommandError(f"commands.hmac_key_path: cannot read {path}: {exc.strerror or exc}") from exc
    if len(key) < MIN_HMAC_KEY_BYTES:
        raise CommandError(
            f"commands.hmac_key_path: expected a key of at least {MIN_HMAC_KEY_BYTES} bytes, got {len(key)}")
    return key


def make_command(
    name: str,
    args: Mapping[str, Any] | None = None,
    *,
    device_id: str,
    request_id: str | None = None,
    issued_at_unix_s: float | None = None,
    nonce: str | None = None,
) -> dict[str, Any]:
    """Build a command body (client side); ``issued_at_unix_s`` defaults to now and ``nonce`` to a random one."""
    body: dict[str, Any] = {
        "schema_version": COMMAND_SCHEMA_VERSION,
        "command": name,
        "device_id": device_id,
        "issued_at_unix_s": time.time() if issued_at_unix_s is None else issued_at_unix_s,
        "nonce": secrets.token_hex(16) if nonce is None else nonce,
        "args": dict(args or {}),
    }
    if request_id is not None:
        body["request_id"] = request_id
    return body


def sign_command(body: Mapping[str, Any] | str | bytes, key: bytes) -> bytes:
    """Wrap a command body in an HMAC-SHA256 envelope and return the MQTT payload (client side)."""
    if isinstance(body, Mapping):
        text = json.dumps(body, separators=(",", ":"), allow_nan=False)
    elif isinstance(body, bytes):
        text = body.decode("utf-8")
    else:
        text = body
    mac = hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()
    return json.dumps({"body": text, "hmac_sha256": mac}, separators=(",", ":")).encode("utf-8")


def _loads(text: str | bytes, what: str) -> Any:
    try:
        return loads_strict(text)
    except ValueError as exc:
        raise CommandError(f"{what}: expected a JSON object, got unparsable JSON ({exc})") from None


def _int_arg(where: str, value: Any, lo: int, hi: int) -> int:
    return require_int(value, where, CommandError, minimum=lo, maximum=hi)


class CommandParser:
    """Validate incoming commands against the ``[commands]`` configuration (thread-safe).

    Parameters
    ----------
    config : CommandsConfig
        Size limit, authentication, clock skew and allowed directories.
    device_id : str
        This device's id; a command naming another device is refused.
    clock : callable returning float
        Wall clock in Unix seconds (injectable for tests).
    payload_limits : mapping of command name to bytes, optional
        A larger payload bound for some commands than ``max_payload_bytes`` (``deploy_chunk`` carries a chunk).
    """

    def __init__(self, config: CommandsConfig, *, device_id: str,
                 clock: Callable[[], float] = time.time, payload_limits: Mapping[str, int] | None = None) -> None:
        self.config = config
        self._payload_limits = dict(payload_limits or {})
        self.device_id = device_id
        self._clock = clock
        self._key = load_hmac_key(config.hmac_key_path) if config.hmac_key_path is not None else None
        self._allowed = tuple(Path(os.path.realpath(d)) for d in config.allowed_dirs)
        self._nonces: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------------------------- entry

    def parse(self, name: str, payload: bytes) -> RemoteCommand:
        """Validate one command received on ``.../cmd/<name>``.

        Raises
        ------
        CommandError
            With a message naming what is wrong; the command must then change nothing.
        """
        try:
            cmd_name = CommandName(name)
        except ValueError:
            known = ", ".join(c.value for c in CommandName)
            raise CommandError(f"command: expected one of {known}, got {name!r}") from None
        limit = max(self.config.max_payload_bytes, self._payload_limits.get(name, 0))
        if len(payload) > limit:
            raise CommandError(f"payload: expected at most {limit} bytes, got {len(payload)}")
        outer = _loads(payload, "payload")
        require_mapping(outer, "payload", CommandError, "a JSON object")
        authenticated = False
        if "hmac_sha256" in outer or "body" in outer:
            body_text = self._verify_envelope(outer)
            body = _loads(body_text, "body")
            require_mapping(body, "body", CommandError, "a JSON object")
            authenticated = True
        else:
            if self.config.require_auth:
                raise CommandError("payload: expected an HMAC-SHA256 envelope {\"body\", \"hmac_sha256\"}: "
                                   "commands.require_auth is true")
            body = outer
        return self._parse_body(cmd_name, body, authenticated)

    @staticmethod
    def peek_request_id(payload: bytes) -> str | None:
        """Best-effort ``request_id`` of a (possibly invalid or signed) payload, for the error response; read as
        strictly as the command itself (:func:`~edge.jsonstrict.loads_strict`): None where two readers could
        disagree (a repeated key, a NaN) or nothing can be read."""
        if len(payload) > 65_536:  # bigger payloads were refused unread; do not parse them here either
            return None
        try:
            obj = loads_strict(payload)
            if isinstance(obj, dict) and isinstance(obj.get("body"), str):
                obj = loads_strict(obj["body"])
        except ValueError:  # loads_strict's one refusal (UTF-8, syntax, NaN, repeated keys, nesting)
            return None
        rid = obj.get("request_id") if isinstance(obj, dict) else None
        return rid if isinstance(rid, str) and _REQUEST_ID_RE.match(rid) else None

    # ------------------------------------------------------------------------------------------ internals

    def _verify_envelope(self, outer: dict[str, Any]) -> str:
        if set(outer) != {"body", "hmac_sha256"}:
            raise CommandError(f"payload: expected exactly the keys body and hmac_sha256, got {sorted(outer)}")
        body, mac = outer["body"], outer["hmac_sha256"]
        if not isinstance(body, str):
            raise CommandError(f"body: expected the command body as a JSON string, got {type(body).__name__}")
        if not isinstance(mac, str) or not _HEX64_RE.match(mac):
            raise CommandError("hmac_sha256: expected 64 hexadecimal characters")
        if self._key is None:
            raise CommandError("hmac_sha256: signed command but no commands.hmac_key_path is configured")
        try:
            body_bytes = body.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate from a JSON escape: no valid UTF-8 was signed
            raise CommandError(f"body: expected valid UTF-8 text, got {exc.reason} at position {exc.start}") from None
        expected = hmac.new(self._key, body_bytes, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, mac.lower()):
            raise CommandError("hmac_sha256: signature does not match the body")
        return body

    def _parse_body(self, name: CommandName, body: dict[str, Any], authenticated: bool) -> RemoteCommand:
        where = name.value
        require_fields(body, where, CommandError, optional=sorted(_BODY_KEYS), noun="field")
        version = body.get("schema_version")
        if type(version) is not int or version != COMMAND_SCHEMA_VERSION:  # 1.0 and True equal 1 in Python
            raise CommandError(f"{where}.schema_version: expected {COMMAND_SCHEMA_VERSION}, got {version!r}")
        if body.get("command") != name.value:
            raise CommandError(f"{where}.command: expected {name.value!r} (the topic's command), "
                               f"got {body.get('command')!r}")
        if body.get("device_id") != self.device_id:
            raise CommandError(f"{where}.device_id: expected {self.device_id!r}, got {body.get('device_id')!r}")
        request_id = body.get("request_id")
        if request_id is not None:
            require_str(request_id, f"{where}.request_id", CommandError, pattern=_REQUEST_ID_RE,
                        pattern_doc="1-64 characters from A-Z a-z 0-9 . _ : -")
        issued = self._check_time(where, body.get("issued_at_unix_s"))
        nonce = body.get("nonce")
        if nonce is not None or authenticated:
            require_str(nonce, f"{where}.nonce", CommandError, pattern=_NONCE_RE,
                        pattern_doc="8-64 characters from A-Z a-z 0-9 _ -")
        args = body.get("args", {})
        require_mapping(args, f"{where}.args", CommandError)
        parsed = self._parse_args(name, args)
        if authenticated:
            self._remember_nonce(where, str(nonce))  # only after everything else is valid
        return RemoteCommand(name=name, args=parsed, request_id=request_id, authenticated=authenticated,
                             issued_at_unix_s=issued)

    def _check_time(self, where: str, issued: Any) -> float:
        """Every command says when it was issued: within ``max_clock_skew_s`` of the device clock either way, and
        at most ``max_age_s`` ago (:class:`StaleCommandError`: it waited in the broker, e.g. during an outage)."""
        max_age_s = self.config.max_age_s
        if issued is None:
            raise CommandError(f"{where}.issued_at_unix_s: required (the Unix time the command was issued; commands "
                               f"older than commands.max_age_s = {max_age_s:g} s are refused)")
        require(is_number(issued), CommandError, f"{where}.issued_at_unix_s", "a Unix time in seconds", issued)
        age_s = self._clock() - float(issued)
        if abs(age_s) > self.config.max_clock_skew_s:
            error = StaleCommandError if age_s > 0 else CommandError
            raise error(f"{where}.issued_at_unix_s: expected within {self.config.max_clock_skew_s:g} s "
                        f"of the device clock, got {abs(age_s):.0f} s away (stale or replayed)")
        if age_s > max_age_s:
            raise StaleCommandError(f"{where}.issued_at_unix_s: expected a command at most {max_age_s:g} s old "
                                    f"(commands.max_age_s), got one issued {age_s:.1f} s ago (stale: it waited in "
                                    "the broker); send it again if it is still wanted")
        return float(issued)

    def _remember_nonce(self, where: str, nonce: str) -> None:
        now = self._clock()
        window = self.config.max_clock_skew_s
        with self._lock:
            while self._nonces:
                _oldest, seen = next(iter(self._nonces.items()))
                if now - seen > 2 * window or len(self._nonces) >= MAX_REMEMBERED_NONCES:
                    self._nonces.popitem(last=False)
                else:
                    break
            if nonce in self._nonces:
                raise CommandError(f"{where}.nonce: expected a fresh nonce, got one already used (replay)")
            self._nonces[nonce] = now

    def _parse_args(self, name: CommandName, args: dict[str, Any]) -> CommandArgs:
        where = f"{name.value}.args"

        def only(*keys: str) -> None:
            require_fields(args, where, CommandError, optional=keys)

        if name is CommandName.RELOAD_BUNDLE:
            only("path")
            raw = args.get("path")
            if raw is None:
                return ReloadBundleArgs(path=None)
            return ReloadBundleArgs(path=self.confine(raw, f"{where}.path"))
        if name in (CommandName.CAPTURE_DARK, CommandName.CAPTURE_REFERENCE):
            only("average_frames")
            n = args.get("average_frames", DEFAULT_AVERAGE_FRAMES)
            return CaptureArgs(average_frames=_int_arg(f"{where}.average_frames", n, 1,
                                                       self.config.max_capture_frames))
        if name is CommandName.TAG_SAMPLE:
            only("sample_id", "frames")
            sample_id = require_str(args.get("sample_id"), f"{where}.sample_id", CommandError, pattern=_SAMPLE_ID_RE,
                                    pattern_doc="1-64 printable ASCII characters without a space at either end")
            return TagSampleArgs(sample_id=sample_id,
                                 frames=_int_arg(f"{where}.frames", args.get("frames", 1), 1, MAX_TAG_FRAMES))
        if name is CommandName.MEASURE_CONTROL:
            only("name", "frames")
            std = require_str(args.get("name"), f"{where}.name", CommandError, pattern=_STANDARD_RE,
                              pattern_doc="1-48 of A-Z a-z 0-9 . _ -")
            return MeasureControlArgs(name=std,
                                      frames=_int_arg(f"{where}.frames", args.get("frames", 1), 1, MAX_TAG_FRAMES))
        if name.value in DEPLOY_COMMANDS:
            return parse_deploy_args(name.value, args)
        if name in _SHADOW_COMMANDS:
            return parse_shadow_args(name.value, args, self.confine)
        if name is CommandName.RESET_DRIFT:
            return parse_reset_drift_args(args)
        require_fields(args, where, CommandError, ("integration_time_us",))
        return SetIntegrationTimeArgs(integration_time_us=_int_arg(
            f"{where}.integration_time_us", args["integration_time_us"], 1, INTEGRATION_TIME_US_MAX))

    def confine(self, raw: Any, where: str = "path") -> Path:
        """Resolve ``raw`` (relative to the first allowed directory) and check it is a file inside one of them.

        Raises
        ------
        CommandError
            Not a string, too long, NUL bytes, outside every allowed directory, or not an existing file.
        """
        if not isinstance(raw, str) or not raw or len(raw) > _MAX_PATH_CHARS or "\x00" in raw:
            raise CommandError(f"{where}: expected a path of 1-{_MAX_PATH_CHARS} characters, got {raw!r:.80}")
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: no file system path can be built from it
            raise CommandError(
                f"{where}: expected valid UTF-8 text, got {exc.reason} at position {exc.start}"
            ) from None
        if not self._allowed:
            raise CommandError(f"{where}: expected no path: no commands.allowed_dirs are configured")
        candidate = Path(raw)
        if not candidate.is_absolute():
            candidate = self._allowed[0] / candidate
        resolved = Path(os.path.realpath(candidate))
        if not any(resolved == d or resolved.is_relative_to(d) for d in self._allowed):
            allowed = ", ".join(str(d) for d in self._allowed)
            raise CommandError(f"{where}: expected a path inside {allowed}, got {raw!r}")
        if not resolved.is_file():
            raise CommandError(f"{where}: expected an existing file, got {raw!r}")
        return resolved

"""An optional OPC UA server exposing each target's latest prediction and the device's status as read-only nodes.

Off unless ``[opcua] enabled = true``; then ``opc.tcp://<host>:<port>/`` serves, in the namespace
``urn:spectrolite:<device_id>`` (``opcua.namespace`` overrides it), one object per device::

    Objects/<device_id>/                      NodeId ns=<ns>;s=<device_id>
        State          String    'online' / 'offline' (the retained .../status)
        Alerts         String[]  the status's alerts ('drift:ood_q', 'missing_reference', ...)
        ModelId        String    model of the last status or prediction
        ModelVersion   String
        LastSeq        Int64     seq of the last prediction
        DeviceBootId   UInt32    the device's boot id (BadWaitingForInitialData while it announced none)
        DeviceTimestampUs  UInt64  the device clock of the last prediction (counts from the device's boot)
        Quality        String    quality of the last prediction ('ok', 'out_of_distribution', ...)
        Targets/<name>/                       NodeId ns=<ns>;s=<device_id>.Targets.<name>
            Value      Double    the prediction; property EngineeringUnits (EUInformation, the unit as text)
            Lower      Double    lower bound of the prediction interval (Bad when the bundle gives none)
            Upper      Double    upper bound
            Quality    String    as the device's Quality
            Unit       String    the unit as text (property)

Every variable's NodeId is ``ns=<ns>;s=<device_id>.<path>`` (``nir-01.Targets.api.Value``), so a client can be
configured with fixed NodeIds.  The StatusCode of ``Value`` (and of ``Lower``, ``Upper``) says whether to use it:

- ``Good``: quality ``ok``;
- ``Uncertain``: ``out_of_distribution`` or ``stale_reference`` (a value, but outside what the model knows);
- ``Bad``: ``saturated``, ``missing_reference`` or ``instrument_fault``; and while the status carries an alert that
  stops predictions (``signal_mismatch``, ``missing_reference``: spectra are rejected), on the last value;
- ``BadWaitingForInitialData``: no prediction yet; ``BadOutOfService``: the daemon is stopping (State offline).

The SourceTimestamp of a prediction's nodes is the message's ``time_unix_s`` (the daemon's clock when it made the
prediction; the device's own clock counts from its boot and is ``DeviceTimestampUs``); of the status nodes, the
status's ``time_unix_s``.  Clients cannot write anything (every variable is CurrentRead only).

The server keeps the latest value of each node: updates are coalesced, never queued, so a slow or stuck OPC UA side
never slows inference (``opcua_updates`` counts the messages applied, ``opcua_coalesced`` those overtaken by a newer
one before they were written, ``opcua_errors`` failed writes, logged at most once a minute).

The mapping (:class:`NodeModel`) is plain Python; only :class:`OpcUaServer` needs the ``asyncua`` package (the
``opcua`` extra), imported when the server starts, so importing ``edge`` never loads it.

>>> m = NodeModel("nir-01")
>>> [(v.path, v.value, v.status) for v in m.apply_prediction({"time_unix_s": 1.0, "seq": 7,
...  "device_timestamp_us": 5, "device_boot_id": None, "quality": "out_of_distribution",
...  "model": {"id": "m", "version": "1"},
...  "values": [{"name": "api", "unit": "%w/w", "value": 2.5, "lower": 2.0, "upper": 3.0}]})][:3]
[('Targets.api.Value', 2.5, 'Uncertain'), ('Targets.api.Lower', 2.0, 'Uncertain'), ('Targets.api.Upper', 3.0, \
'Uncertain')]
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from edge.errors import ConfigError, EdgeError
from edge.publish.schema import MessageKind

if TYPE_CHECKING:
    from edge.config import EdgeConfig
    from edge.publish.schema import MessageKind as _Kind

__all__ = ["NodeValue", "NodeModel", "status_of_quality", "OpcUaServer", "OpcUaLink", "with_opcua",
           "DEVICE_VARIABLES", "TARGET_VARIABLES"]

log = logging.getLogger(__name__)

#: At most one log line per this many seconds about failing writes.
ERROR_LOG_INTERVAL_S = 60.0
#: How long :meth:`OpcUaServer.start` waits for the server to listen (loading the standard address space).
START_TIMEOUT_S = 60.0

#: Device-level variables: name -> OPC UA built-in type.
DEVICE_VARIABLES: dict[str, str] = {
    "State": "String", "Alerts": "String[]", "ModelId": "String", "ModelVersion": "String", "LastSeq": "Int64",
    "DeviceBootId": "UInt32", "DeviceTimestampUs": "UInt64", "Quality": "String",
}
#: Variables of each target: name -> OPC UA built-in type.
TARGET_VARIABLES: dict[str, str] = {"Value": "Double", "Lower": "Double", "Upper": "Double", "Quality": "String"}

_UNCERTAIN = frozenset({"out_of_distribution", "stale_reference"})
#: Status alerts under which no prediction is made (spectra are rejected): the last values turn Bad.
_NO_PREDICTION_ALERTS = frozenset({"signal_mismatch", "missing_reference"})


def status_of_quality(quality: str) -> str:
    """The StatusCode name of a prediction of this quality.

    >>> status_of_quality("ok"), status_of_quality("stale_reference"), status_of_quality("saturated")
    ('Good', 'Uncertain', 'Bad')
    """
    if quality == "ok":
        return "Good"
    return "Uncertain" if quality in _UNCERTAIN else "Bad"


@dataclass(frozen=True)
class NodeValue:
    """What one variable holds: its path below the device object, value, StatusCode name (``ua.StatusCodes``) and
    SourceTimestamp (Unix seconds; None: none)."""

    path: str
    value: Any
    status: str
    source_time_unix_s: float | None = None


class NodeModel:
    """The pure mapping of prediction and status messages to node values (no asyncua; any thread, one at a time).

    Parameters
    ----------
    device_id : str
        Name of the device object.
    targets : sequence of (name, unit)
        Targets known at start (the bundle's); others are added when a prediction names them.
    """

    def __init__(self, device_id: str, targets: Sequence[tuple[str, str]] = ()) -> None:
        self.device_id = device_id
        self.units: dict[str, str] = {}
        self._values: dict[str, NodeValue] = {}
        self._online = False
        self.alerts: list[str] = []
        for name, unit in targets:
            self.units[name] = unit

    def initial(self) -> list[NodeValue]:
        """The values before any message: every variable BadWaitingForInitialData."""
        empty: dict[str, Any] = {"String": "", "String[]": [], "Double": math.nan}
        out = [NodeValue(n, empty.get(t, 0), "BadWaitingForInitialData") for n, t in DEVICE_VARIABLES.items()]
        for name in self.units:
            out += [NodeValue(f"Targets.{name}.{n}", empty[t], "BadWaitingForInitialData")
                    for n, t in TARGET_VARIABLES.items()]
        return out

    def apply_prediction(self, message: Mapping[str, Any]) -> list[NodeValue]:
        """Node values of one ``.../prediction`` payload (targets it does not name turn Bad: no data)."""
        t = message.get("time_unix_s")
        quality = str(message.get("quality", "ok"))
        status = status_of_quality(quality)
        out: list[NodeValue] = []
        seen = set()
        for v in message.get("values", []):
            name = str(v["name"])
            seen.add(name)
            self.units.setdefault(name, str(v.get("unit", "")))
            out.append(NodeValue(f"Targets.{name}.Value", float(v["value"]), status, t))
            for key, node in (("lower", "Lower"), ("upper", "Upper")):
                bound = v.get(key)
                out.append(NodeValue(f"Targets.{name}.{node}", math.nan if bound is None else float(bound),
                                     "Bad" if bound is None else status, t))
            out.append(NodeValue(f"Targets.{name}.Quality", quality, "Good", t))
        for name in self.units:
            if name not in seen and f"Targets.{name}.Value" in self._values:
                out.append(self._restatus(f"Targets.{name}.Value", "Bad"))
        model = message.get("model") or {}
        boot = message.get("device_boot_id")
        out += [
            NodeValue("LastSeq", int(message["seq"]), "Good", t),
            NodeValue("DeviceTimestampUs", int(message["device_timestamp_us"]), "Good", t),
            NodeValue("DeviceBootId", 0 if boot is None else int(boot),
                      "BadWaitingForInitialData" if boot is None else "Good", t),
            NodeValue("Quality", quality, "Good", t),
            NodeValue("ModelId", str(model.get("id", "")), "Good", t),
            NodeValue("ModelVersion", str(model.get("version", "")), "Good", t),
        ]
        if not self._online:  # a prediction before the first status message (statuses go through the outbox)
            out.append(NodeValue("State", "online", "Good", t))
            self._online = True
        return self._keep(out)

    def apply_status(self, message: Mapping[str, Any]) -> list[NodeValue]:
        """Node values of one ``.../status`` payload; offline, or an alert that stops predictions, turns the
        targets' last values Bad (BadOutOfService when offline)."""
        t = message.get("time_unix_s")
        state = str(message.get("state", ""))
        alerts = [str(a) for a in message.get("alerts", [])]
        self._online = state == "online"
        self.alerts = alerts
        out = [NodeValue("State", state, "Good", t), NodeValue("Alerts", alerts, "Good", t)]
        model = message.get("model")
        if model:
            out += [NodeValue("ModelId", str(model.get("id", "")), "Good", t),
                    NodeValue("ModelVersion", str(model.get("version", "")), "Good", t)]
        boot = message.get("device_boot_id")
        if boot is not None:
            out.append(NodeValue("DeviceBootId", int(boot), "Good", t))
        bad = "BadOutOfService" if state != "online" else "Bad" if _NO_PREDICTION_ALERTS & set(alerts) else None
        if bad is not None:
            for name in self.units:
                for node in ("Value", "Lower", "Upper"):
                    if f"Targets.{name}.{node}" in self._values:
                        out.append(self._restatus(f"Targets.{name}.{node}", bad))
        return self._keep(out)

    def _restatus(self, path: str, status: str) -> NodeValue:
        old = self._values[path]
        return NodeValue(path, old.value, status, old.source_time_unix_s)

    def _keep(self, values: list[NodeValue]) -> list[NodeValue]:
        for v in values:
            self._values[v.path] = v
        return values


class _Link(Protocol):
    """What :class:`OpcUaLink` wraps: the daemon's ``Link`` (edge.daemon), with ``failure`` where it has one."""

    def start(self) -> None: ...

    def publish(self, kind: _Kind, message: dict[str, Any], *, command: str | None = None) -> None: ...

    def publish_many(self, messages: Sequence[tuple[_Kind, dict[str, Any], str | None]]) -> list[EdgeError | None]:
        ...

    def stop(self, flush_timeout_s: float) -> None: ...

    def stats(self) -> Mapping[str, Any]: ...

    def switch_broker(self, config: EdgeConfig) -> None: ...


class OpcUaServer:
    """asyncua's Server on its own thread and asyncio loop, fed the daemon's messages from any thread.

    Parameters
    ----------
    device_id : str
        The device object's name.
    host, port : str, int
        Address to listen on (``127.0.0.1``: this host only).
    namespace : str
        Namespace URI of the device's nodes.
    targets : sequence of (name, unit)
        Targets whose nodes exist from the start.

    Raises
    ------
    ConfigError
        ``asyncua`` is not installed.
    """

    def __init__(self, device_id: str, *, host: str, port: int, namespace: str,
                 targets: Sequence[tuple[str, str]] = ()) -> None:
        try:
            import asyncua  # noqa: F401 - checked here so a missing package fails at start, clearly
        except ImportError:
            raise ConfigError(
                "opcua.enabled: expected the asyncua package with the OPC UA server on, got none installed "
                "(pip install 'spectrolite[opcua]', or set opcua.enabled = false)"
            ) from None
        self.device_id = device_id
        self.host = host
        self.port = port
        self.namespace = namespace
        self.model = NodeModel(device_id, targets)
        self.updates = 0
        self.coalesced = 0
        self.errors = 0
        self._log_again_at = -float("inf")
        self._lock = threading.Lock()
        self._pending: dict[str, NodeValue] = {path.path: path for path in self.model.initial()}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"opc.tcp://{host}:{self.port}/"

    # ----------------------------------------------------------------------------------- daemon side (any thread)
    def post(self, kind: MessageKind, message: Mapping[str, Any]) -> None:
        """Apply one outgoing message (predictions and statuses; other kinds are ignored); never blocks on OPC UA."""
        if kind is not MessageKind.PREDICTION and kind is not MessageKind.STATUS:
            return
        try:
            with self._lock:
                values = (self.model.apply_prediction(message) if kind is MessageKind.PREDICTION
                          else self.model.apply_status(message))
                for v in values:
                    if v.path in self._pending:
                        self.coalesced += 1
                    self._pending[v.path] = v
                self.updates += 1
        except (KeyError, TypeError, ValueError) as exc:  # a malformed message must not reach the daemon's thread
            self._error(f"{kind.value} message not mapped: {exc!r}")
            return
        self._notify()

    def failure(self) -> str | None:
        """Why the server no longer serves although it was not stopped (its thread ended), or None."""
        t = self._thread
        if t is None or self._stopping or t.is_alive():
            return None
        return "the OPC UA server thread ended"

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"opcua_updates": self.updates, "opcua_coalesced": self.coalesced, "opcua_errors": self.errors}

    def _notify(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop has closed (stopping): nothing to write to any more
                pass

    def _error(self, what: str) -> None:
        """Count an error; log it unless one was logged less than :data:`ERROR_LOG_INTERVAL_S` ago."""
        with self._lock:
            self.errors, n = self.errors + 1, self.errors + 1
            now = time.monotonic()
            speak = now >= self._log_again_at
            self._log_again_at = now + ERROR_LOG_INTERVAL_S if speak else self._log_again_at
        if speak:
            log.error("opcua: %s (%d error(s) so far)", what, n)

    # ------------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Listen and serve; return once listening.

        Raises
        ------
        OSError
            The address cannot be bound (or the server did not come up within :data:`START_TIMEOUT_S`).
        """
        self._thread = threading.Thread(target=self._run, name="spectro-opcua", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise OSError(f"opcua: the server at {self.url} did not start within {START_TIMEOUT_S:.0f} s")
        if self._failure is not None:
            self._thread.join(timeout=10.0)
            raise OSError(f"opcua: cannot listen on {self.url}: {self._failure}") from self._failure
        log.info("OPC UA server at %s (namespace %s, read-only)", self.url, self.namespace)

    def stop(self) -> None:
        """Write what is pending, stop serving and close the socket."""
        self._stopping = True
        self._notify()
        if self._thread is not None:
            self._thread.join(timeout=30.0)
            if self._thread.is_alive():  # pragma: no cover - reported, not waited for forever
                log.error("opcua: the server thread did not stop within 30 s")
            self._thread = None

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start() or logged; never kills the daemon
            if not self._ready.is_set():
                self._failure = exc
                self._ready.set()
            else:
                log.exception("opcua: the server stopped")

    async def _main(self) -> None:
        Server, ua = _asyncua()
        logging.getLogger("asyncua").setLevel(max(logging.WARNING, logging.getLogger("asyncua").level))
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name(f"spectrolite {self.device_id}")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await server.register_namespace(self.namespace)
        nodes = _Nodes(server, ns, self.device_id)
        await nodes.build_device()
        self._wake = asyncio.Event()
        self._wake.set()  # write the initial values and what was posted before the loop ran
        self._loop = asyncio.get_running_loop()
        try:
            await server.start()
        except BaseException:
            self._loop = None
            raise
        self._ready.set()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self._flush(nodes, ua)
                if self._stopping:
                    break
        finally:
            self._loop = None
            await server.stop()

    async def _flush(self, nodes: _Nodes, ua: Any) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            units = dict(self.model.units)
        for v in pending.values():
            try:
                await nodes.write(v, units, ua)
            except Exception as exc:  # a failed write is counted and logged, the server goes on
                self._error(f"writing {v.path} failed: {exc!r}")


class _Nodes:
    """The device's nodes in one asyncua server (its loop only)."""

    def __init__(self, server: Any, ns: int, device_id: str) -> None:
        self.server = server
        self.ns = ns
        self.device_id = device_id
        self.vars: dict[str, Any] = {}
        self.device: Any = None
        self.targets: Any = None

    def nodeid(self, path: str) -> Any:
        return _asyncua()[1].NodeId(f"{self.device_id}.{path}" if path else self.device_id, self.ns)

    async def build_device(self) -> None:
        ua = _asyncua()[1]
        self.device = await self.server.nodes.objects.add_object(self.nodeid(""), f"{self.ns}:{self.device_id}")
        self.targets = await self.device.add_folder(self.nodeid("Targets"), f"{self.ns}:Targets")
        for name, kind in DEVICE_VARIABLES.items():
            self.vars[name] = await self.device.add_variable(
                self.nodeid(name), f"{self.ns}:{name}", *_initial(kind, ua))

    async def add_target(self, name: str, unit: str) -> None:
        ua = _asyncua()[1]
        obj = await self.targets.add_object(self.nodeid(f"Targets.{name}"), f"{self.ns}:{name}")
        for var, kind in TARGET_VARIABLES.items():
            self.vars[f"Targets.{name}.{var}"] = await obj.add_variable(
                self.nodeid(f"Targets.{name}.{var}"), f"{self.ns}:{var}", *_initial(kind, ua))
        await obj.add_property(self.nodeid(f"Targets.{name}.Unit"), f"{self.ns}:Unit", unit, ua.VariantType.String)
        eu = ua.EUInformation(NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact", UnitId=-1,
                              DisplayName=ua.LocalizedText(unit), Description=ua.LocalizedText(unit))
        await self.vars[f"Targets.{name}.Value"].add_property(
            self.nodeid(f"Targets.{name}.Value.EngineeringUnits"), ua.QualifiedName("EngineeringUnits", 0),
            ua.Variant(eu, ua.VariantType.ExtensionObject), datatype=ua.NodeId(ua.ObjectIds.EUInformation))

    async def write(self, v: NodeValue, units: Mapping[str, str], ua: Any) -> None:
        if v.path not in self.vars and v.path.startswith("Targets."):
            name = v.path[len("Targets."):].rsplit(".", 1)[0]
            await self.add_target(name, units.get(name, ""))
        kind = DEVICE_VARIABLES.get(v.path) or TARGET_VARIABLES[v.path.rsplit(".", 1)[1]]
        ts = (None if v.source_time_unix_s is None
              else _utc(v.source_time_unix_s))
        # positional: the status field is StatusCode_ in asyncua 1.x and StatusCode in 2.x
        dv = ua.DataValue(_variant(v.value, kind, ua), ua.StatusCode(getattr(ua.StatusCodes, v.status)), ts,
                          _utc(time.time()))
        await self.server.write_attribute_value(self.vars[v.path].nodeid, dv)


def _asyncua() -> tuple[Any, Any]:
    """asyncua's ``Server`` class and ``ua`` module, untyped (its stubs are partial: NodeId wants its own Int16)."""
    from asyncua import ua
    from asyncua.server.server import Server

    return Server, ua


def _utc(t_unix_s: float) -> Any:
    import datetime as _dt

    return _dt.datetime.fromtimestamp(t_unix_s, _dt.timezone.utc)


def _variant(value: Any, kind: str, ua: Any) -> Any:
    if kind == "String[]":
        return ua.Variant(list(value), ua.VariantType.String, is_array=True)
    return ua.Variant(value, getattr(ua.VariantType, kind))


def _initial(kind: str, ua: Any) -> tuple[Any, Any]:
    empty: dict[str, Any] = {"String": "", "String[]": [], "Double": math.nan}
    base = kind.rstrip("[]")
    return _variant(empty.get(kind, 0), kind, ua), ua.NodeId(getattr(ua.ObjectIds, base))


class OpcUaLink:
    """The daemon's link with every prediction and status also handed to an :class:`OpcUaServer`.

    The server is already listening; :meth:`stop` says ``offline`` to OPC UA clients, stops the wrapped link (which
    flushes MQTT) and then the server.  Everything else is the wrapped link's.
    """

    def __init__(self, link: _Link, server: OpcUaServer) -> None:
        self.link = link
        self.server = server

    def start(self) -> None:
        self.link.start()

    def publish(self, kind: MessageKind, message: dict[str, Any], *, command: str | None = None) -> None:
        self.link.publish(kind, message, command=command)
        self.server.post(kind, message)

    def publish_many(self, messages: Sequence[tuple[MessageKind, dict[str, Any], str | None]]
                     ) -> list[EdgeError | None]:
        errors = self.link.publish_many(messages)
        for kind, message, _ in messages:
            self.server.post(kind, message)
        return errors

    def stop(self, flush_timeout_s: float) -> None:
        self.server.post(MessageKind.STATUS, {"state": "offline", "time_unix_s": time.time(),
                                              "alerts": list(self.server.model.alerts)})
        try:
            self.link.stop(flush_timeout_s)
        finally:
            self.server.stop()

    def stats(self) -> Mapping[str, Any]:
        return {**self.link.stats(), **self.server.stats()}

    def switch_broker(self, config: EdgeConfig) -> None:
        self.link.switch_broker(config)

    def failure(self) -> str | None:
        """The wrapped link's failure, else the server's (the daemon's watchdog then exits for a restart)."""
        failure: Callable[[], str | None] | None = getattr(self.link, "failure", None)
        return (failure() if failure is not None else None) or self.server.failure()


def with_opcua(config: EdgeConfig, link: _Link, targets: Iterable[Any] = ()) -> _Link:
    """``link`` itself when ``[opcua]`` is off; else an :class:`OpcUaLink` over a started :class:`OpcUaServer`.

    Parameters
    ----------
    targets : iterable of objects with ``name`` and ``unit``
        The bundle's targets (``Bundle.targets``), whose nodes exist before the first prediction.

    Raises
    ------
    ConfigError
        The server is on and ``asyncua`` is not installed.
    OSError
        The address cannot be bound.
    """
    o = config.opcua
    if not o.enabled:
        return link
    device_id = config.device.device_id
    server = OpcUaServer(device_id, host=o.host, port=o.port, namespace=o.namespace or f"urn:spectrolite:{device_id}",
                         targets=[(str(t.name), str(t.unit or "")) for t in targets])
    server.start()
    return OpcUaLink(link, server)

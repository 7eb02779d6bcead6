"""The fleet's MQTT client: the retained status of every device under a topic prefix, signed commands out, and
their responses in, matched by ``request_id``.

Topics read: ``<prefix>/+/+/+/status`` (retained) and ``<prefix>/+/+/+/cmd/+/response``; commands go to
``<prefix>/<site>/<line>/<device_id>/cmd/<name>`` or a group's ``<prefix>/group/<group>/cmd/<name>``.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from edge.commands import make_command, sign_command
from edge.errors import EdgeError
from edge.jsonstrict import loads_strict

__all__ = ["Device", "FleetClient", "FleetError", "Response"]

log = logging.getLogger("spectro-fleet")


class FleetError(EdgeError, RuntimeError):
    """The broker cannot be reached, a device is unknown, or a transfer cannot go on (the message says why)."""


@dataclass
class Device:
    """One device as its retained status shows it."""

    site: str
    line: str
    device_id: str
    base: str  #: ``<prefix>/<site>/<line>/<device_id>``
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def online(self) -> bool:
        return self.status.get("state") == "online"

    @property
    def groups(self) -> list[str]:
        deploy = self.status.get("deploy") or {}
        return [str(g) for g in deploy.get("groups", [])]

    @property
    def model(self) -> str:
        m = self.status.get("model") or {}
        return f"{m.get('id', '?')} {m.get('version', '?')}" if m else "-"

    @property
    def transfer(self) -> dict[str, Any] | None:
        deploy = self.status.get("deploy") or {}
        t = deploy.get("transfer")
        return t if isinstance(t, dict) else None


@dataclass(frozen=True)
class Response:
    """A command response from one device."""

    device_id: str
    command: str
    ok: bool
    error: str | None
    result: dict[str, Any]


class FleetClient:
    """A connected paho client collecting statuses and responses (thread-safe).

    Parameters
    ----------
    host, port : str, int
        The broker.
    prefix : str
        ``mqtt.topic_prefix`` of the devices.
    hmac_key : bytes or None
        Signs every command (``commands.hmac_key_path`` of the devices); None sends them unsigned.
    username, password : str or None
        Broker credentials.
    ca_path : Path or None
        TLS with this CA file (None: plain TCP).
    client_id : str
        The MQTT client id (one per operator session).
    on_status : callable(Device), optional
        Called (paho's thread) for every status message received.
    """

    def __init__(self, host: str, port: int, *, prefix: str = "spectrolite", hmac_key: bytes | None = None,
                 username: str | None = None, password: str | None = None, ca_path: Path | None = None,
                 client_id: str = "spectro-fleet", on_status: Callable[[Device], None] | None = None) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.prefix = prefix.strip("/")
        self._key = hmac_key
        self._on_status = on_status
        self._cond = threading.Condition()
        self._devices: dict[str, Device] = {}
        self._responses: dict[str, dict[str, Response]] = {}
        self._subscribed = threading.Event()
        self._last_status_mono = time.monotonic()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if username is not None:
            c.username_pw_set(username, password)
        if ca_path is not None:
            c.tls_set_context(ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_path)))
        c.on_connect = self._on_connect
        c.on_subscribe = lambda *a, **k: self._subscribed.set()
        c.on_message = self._on_message
        try:
            c.connect(host, port, keepalive=30)
        except (OSError, ValueError) as exc:
            raise FleetError(f"cannot connect to the MQTT broker {host}:{port}: {exc}") from exc
        c.loop_start()
        self._client = c
        if not self._subscribed.wait(10.0):
            self.close()
            raise FleetError(f"the MQTT broker {host}:{port} did not answer the subscription within 10 s")

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    # ------------------------------------------------------------------------------------------ devices

    def settle(self, quiet_s: float = 0.5, limit_s: float = 5.0) -> None:
        """Wait until the retained statuses have arrived: no new one for ``quiet_s`` (at most ``limit_s``)."""
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            with self._cond:
                if time.monotonic() - self._last_status_mono >= quiet_s:
                    return
            time.sleep(0.05)

    def devices(self) -> dict[str, Device]:
        """The devices seen so far, by device id."""
        with self._cond:
            return {k: Device(d.site, d.line, d.device_id, d.base, dict(d.status)) for k, d in self._devices.items()}

    def find(self, target: str) -> Device:
        """A device by ``device_id`` or ``site/line/device_id``.

        Raises
        ------
        FleetError
            Unknown, or a bare device id that more than one site/line uses.
        """
        devices = list(self.devices().values())
        if target.count("/") == 2:
            hits = [d for d in devices if f"{d.site}/{d.line}/{d.device_id}" == target]
            if not hits:  # not announced (yet): address it by its topic all the same
                site, line, device_id = target.split("/")
                return Device(site, line, device_id, f"{self.prefix}/{target}")
        else:
            hits = [d for d in devices if d.device_id == target]
        if not hits:
            raise FleetError(f"--to: expected a device with a retained status under {self.prefix}/, got {target!r} "
                             f"(known: {', '.join(sorted(d.device_id for d in devices)) or 'none'}); give "
                             "site/line/device_id to address one that has not announced itself")
        if len(hits) > 1:
            raise FleetError(f"--to: {target!r} is the id of {len(hits)} devices; give site/line/device_id")
        return hits[0]

    # ------------------------------------------------------------------------------------------ commands

    def command_topic(self, name: str, *, device: Device | None = None, group: str | None = None) -> str:
        if (device is None) == (group is None):
            raise ValueError("expected a device or a group")
        return f"{device.base}/cmd/{name}" if device is not None else f"{self.prefix}/group/{group}/cmd/{name}"

    def send(self, name: str, args: Mapping[str, Any], *, request_id: str, device: Device | None = None,
             group: str | None = None) -> None:
        """Publish command ``name`` (signed with the HMAC key when one is given) to a device or a group."""
        body = make_command(name, args, device_id=device.device_id if device is not None else f"group:{group}",
                            request_id=request_id)
        payload = sign_command(body, self._key) if self._key is not None else json.dumps(body).encode()
        info = self._client.publish(self.command_topic(name, device=device, group=group), payload, qos=1)
        if info.rc != 0:
            raise FleetError(f"cannot publish {name}: paho error {info.rc} (disconnected from the broker?)")

    def wait_responses(self, request_id: str, device_ids: set[str], timeout_s: float) -> dict[str, Response]:
        """The responses to ``request_id`` from ``device_ids`` that arrive within ``timeout_s`` (maybe fewer)."""
        end = time.monotonic() + timeout_s
        with self._cond:
            while True:
                got = self._responses.get(request_id, {})
                if device_ids <= set(got):
                    break
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return {k: v for k, v in self._responses.get(request_id, {}).items() if k in device_ids}

    def forget(self, request_id: str) -> None:
        with self._cond:
            self._responses.pop(request_id, None)

    # ------------------------------------------------------------------------------------------ paho

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        if getattr(reason_code, "is_failure", False):
            log.error("the broker refused the connection: %s", reason_code)
            return
        client.subscribe([(f"{self.prefix}/+/+/+/status", 1), (f"{self.prefix}/+/+/+/cmd/+/response", 1)])

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        levels = msg.topic[len(self.prefix) + 1:].split("/") if msg.topic.startswith(self.prefix + "/") else []
        try:
            body = loads_strict(msg.payload) if msg.payload else None
        except ValueError:
            log.debug("ignoring unparsable message on %s", msg.topic)
            return
        if not isinstance(body, dict):
            return
        if len(levels) == 4 and levels[3] == "status":
            site, line, device_id = levels[:3]
            with self._cond:
                d = self._devices.get(device_id)
                if d is None or (d.site, d.line) != (site, line):
                    d = Device(site, line, device_id, f"{self.prefix}/{site}/{line}/{device_id}")
                    self._devices[device_id] = d
                d.status = body
                self._last_status_mono = time.monotonic()
                self._cond.notify_all()
            if self._on_status is not None:
                self._on_status(Device(d.site, d.line, d.device_id, d.base, dict(body)))
        elif len(levels) == 6 and levels[3] == "cmd" and levels[5] == "response":
            rid = body.get("request_id")
            if not isinstance(rid, str):
                return
            result = body.get("result")
            r = Response(device_id=levels[2], command=levels[4], ok=bool(body.get("ok")), error=body.get("error"),
                         result=result if isinstance(result, dict) else {})
            with self._cond:
                self._responses.setdefault(rid, {})[r.device_id] = r
                self._cond.notify_all()

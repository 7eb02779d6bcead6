"""Home Assistant MQTT discovery: the retained configurations that make a device's predictions appear as entities.

Optional (``[homeassistant] enabled = true``).  At every connect the daemon publishes, retained, under
``<discovery_prefix>/<component>/<node_id>/<object_id>/config``:

- one ``sensor`` per target of the bundle: ``state_topic`` is the device's ``.../prediction``, its
  ``value_template`` picks that target's ``value`` out of ``values`` by name, with the target's unit and
  ``state_class: measurement``;
- a ``sensor`` ``quality`` (``device_class: enum``): the prediction's ``quality``;
- a ``binary_sensor`` ``out_of_distribution`` (``device_class: problem``): on while the prediction carries the flag;
- a ``binary_sensor`` ``alerts`` (``device_class: problem``) on the retained ``.../status``: on while any alert is
  active, the list as an attribute.

Every entity is available while the retained ``.../status`` says ``online`` (``availability_template`` reads its
``state``; the last will says ``offline``), and belongs to one HA device per spectrolite device.  ``node_id`` is the
device id (``.`` becomes ``_``), so a broker ACL can confine a device to ``homeassistant/+/%u/+/config``;
``object_id`` and ``unique_id`` carry site and line, so devices with one id on two lines do not collide.

When the bundle changes (a reload), the configurations that changed are published again and entities of targets
that disappeared are removed (an empty retained payload), see :meth:`Discovery.due`.

>>> from edge.publish.topics import Topics
>>> d = Discovery("homeassistant", Topics("spectrolite", "plant-a", "line-3", "nir-01"),
...               lambda: DeviceInfo("tablets", "3", (("api", "%w/w"),), "0.1.0"))
>>> [topic for topic, _ in d.due(full=True)][0]
'homeassistant/sensor/nir-01/plant-a_line-3_api/config'
>>> d.due(full=False)  # nothing changed since
[]
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge.publish.schema import Quality
from edge.publish.topics import Topics

if TYPE_CHECKING:
    from edge.config import EdgeConfig

__all__ = ["DeviceInfo", "Discovery", "discovery_configs", "discovery_from_config", "info_of_engine", "slug",
           "target_template"]

log = logging.getLogger(__name__)

_NOT_ID = re.compile(r"[^a-zA-Z0-9_-]")

#: Availability: the retained status's ``state`` compared with these payloads.
AVAILABILITY_TEMPLATE = "{{ value_json['state'] }}"


@dataclass(frozen=True)
class DeviceInfo:
    """What the discovery configurations say about the device now: its bundle's model and targets."""

    model_id: str
    model_version: str
    targets: tuple[tuple[str, str], ...]  #: (name, unit) of each predicted quantity, in the bundle's order
    software_version: str | None = None


def slug(text: str) -> str:
    """``text`` with every character outside ``[a-zA-Z0-9_-]`` (what HA allows in node and object ids) as ``_``.

    >>> slug("nir.01"), slug("moisture %")
    ('nir_01', 'moisture__')
    """
    return _NOT_ID.sub("_", text)


def target_template(name: str) -> str:
    """The ``value_template`` extracting target ``name``'s value from a prediction payload (Jinja, as HA renders it).

    ``values`` is read with brackets: ``value_json.values`` would be the dict's method.
    """
    return ("{{ value_json['values'] | selectattr('name', 'equalto', " + json.dumps(name)
            + ") | map(attribute='value') | first }}")


def discovery_configs(prefix: str, topics: Topics, info: DeviceInfo) -> dict[str, dict[str, Any]]:
    """Discovery topic -> configuration payload of every entity of the device (see the module docstring)."""
    node = slug(topics.device_id)
    base_id = slug(f"spectrolite_{topics.site}_{topics.line}_{topics.device_id}")
    device: dict[str, Any] = {
        "identifiers": [base_id],
        "name": topics.device_id,
        "manufacturer": "spectrolite",
        "model": f"{info.model_id} {info.model_version}",
        "suggested_area": topics.line,
    }
    if info.software_version:
        device["sw_version"] = info.software_version
    origin = {"name": "spectrolite", **({"sw_version": info.software_version} if info.software_version else {})}
    availability = {"availability_topic": topics.status, "availability_template": AVAILABILITY_TEMPLATE,
                    "payload_available": "online", "payload_not_available": "offline"}

    def entity(component: str, obj: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        object_id = slug(f"{topics.site}_{topics.line}_{obj}")
        config = {"unique_id": f"{base_id}_{slug(obj)}", **body, **availability, "qos": 1, "device": device,
                  "origin": origin}
        return f"{prefix}/{component}/{node}/{object_id}/config", config

    entities = []
    for name, unit in info.targets:
        body: dict[str, Any] = {"name": name, "state_topic": topics.prediction, "value_template": target_template(name),
                                "state_class": "measurement"}
        if unit:
            body["unit_of_measurement"] = unit
        entities.append(entity("sensor", name, body))
    entities.append(entity("sensor", "quality", {
        "name": "quality", "state_topic": topics.prediction, "value_template": "{{ value_json['quality'] }}",
        "device_class": "enum", "options": [q.value for q in Quality]}))
    entities.append(entity("binary_sensor", "out_of_distribution", {
        "name": "out of distribution", "state_topic": topics.prediction, "device_class": "problem",
        "value_template": "{{ 'ON' if 'out_of_distribution' in value_json['quality_flags'] else 'OFF' }}"}))
    entities.append(entity("binary_sensor", "alerts", {
        "name": "alerts", "state_topic": topics.status, "device_class": "problem",
        "value_template": "{{ 'ON' if value_json['alerts'] else 'OFF' }}",
        "json_attributes_topic": topics.status,
        "json_attributes_template": "{{ {'alerts': value_json['alerts']} | tojson }}"}))
    return dict(entities)


class Discovery:
    """The discovery messages of one device, and which of them are due (thread-safe).

    Parameters
    ----------
    prefix : str
        HA's discovery prefix (``homeassistant``).
    topics : Topics
        The device's topics.
    info_source : callable() -> DeviceInfo or None
        What the device runs now (None: not known yet, nothing is due).
    """

    def __init__(self, prefix: str, topics: Topics, info_source: Callable[[], DeviceInfo | None]) -> None:
        self.prefix = prefix
        self.topics = topics
        self.info_source = info_source
        self._lock = threading.Lock()
        self._sent: dict[str, bytes] = {}

    def due(self, *, full: bool) -> list[tuple[str, bytes]]:
        """``(topic, payload)`` to publish retained: every configuration when ``full`` (a new connection), else
        only those that changed since the last call, plus an empty payload for each entity that went away."""
        info = self.info_source()
        if info is None:
            return []
        now = {topic: json.dumps(cfg, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
               for topic, cfg in discovery_configs(self.prefix, self.topics, info).items()}
        with self._lock:
            out: list[tuple[str, bytes]] = [(t, b"") for t in self._sent if t not in now]
            out += [(t, p) for t, p in now.items() if full or self._sent.get(t) != p]
            self._sent = now
        return out


def discovery_from_config(config: EdgeConfig, info_source: Callable[[], DeviceInfo | None]) -> Discovery | None:
    """The device's :class:`Discovery` when ``[homeassistant] enabled``, else None."""
    ha = config.homeassistant
    if not ha.enabled:
        return None
    return Discovery(ha.discovery_prefix, Topics.from_config(config), info_source)


def info_of_engine(engine: Any, software_version: str | None) -> DeviceInfo:
    """:class:`DeviceInfo` of an :class:`edge.inference.InferenceEngine` (its model and target names and units)."""
    names: Sequence[str] = engine.names
    units: Sequence[str] = engine.units
    return DeviceInfo(str(engine.model_id), str(engine.model_version),
                      tuple((str(n), str(u)) for n, u in zip(names, units)), software_version)

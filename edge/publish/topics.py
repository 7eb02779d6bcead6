"""MQTT topics of one device: ``<prefix>/<site>/<line>/<device_id>/<kind>``, commands and their responses.

>>> t = Topics(prefix="spectrolite", site="plant-a", line="line-3", device_id="nir-01")
>>> t.prediction, t.command_response("capture_dark")
('spectrolite/plant-a/line-3/nir-01/prediction', 'spectrolite/plant-a/line-3/nir-01/cmd/capture_dark/response')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from edge.publish.schema import MessageError, MessageKind

if TYPE_CHECKING:
    from edge.config import EdgeConfig

__all__ = ["COMMAND_NAME_RE", "Topics", "topic"]

_LEVEL_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: Command names: lower-case identifiers (one topic level).
COMMAND_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

def _check_level(what: str, value: str) -> str:
    if not isinstance(value, str) or not _LEVEL_RE.match(value):
        raise MessageError(f"{what}: expected 1-64 characters from A-Z a-z 0-9 . _ -, got {value!r}")
    return value


def topic(prefix: str, site: str, line: str, device_id: str, kind: MessageKind | str) -> str:
    """Build ``<prefix>/<site>/<line>/<device_id>/<kind>`` after checking every level holds no wildcard."""
    levels = prefix.split("/")
    for level in levels:
        _check_level("topic prefix level", level)
    for what, value in (("site", site), ("line", line), ("device_id", device_id)):
        _check_level(what, value)
    k = kind.value if isinstance(kind, MessageKind) else kind
    return "/".join([*levels, site, line, device_id, k])


@dataclass(frozen=True)
class Topics:
    """All topics of one device.

    Layout: ``<prefix>/<site>/<line>/<device_id>/{prediction,drift,status,metrics}``, commands on
    ``.../cmd/<name>`` and their responses on ``.../cmd/<name>/response``.  A fleet subscribes with wildcards,
    e.g. ``spectrolite/plant-a/+/+/prediction``.
    """

    prefix: str
    site: str
    line: str
    device_id: str

    def __post_init__(self) -> None:
        topic(self.prefix, self.site, self.line, self.device_id, "x")  # validates every level

    @classmethod
    def from_config(cls, cfg: EdgeConfig) -> Topics:
        """Topics of the device described by ``cfg.device`` under ``cfg.mqtt.topic_prefix``."""
        return cls(prefix=cfg.mqtt.topic_prefix, site=cfg.device.site, line=cfg.device.line,
                   device_id=cfg.device.device_id)

    @property
    def base(self) -> str:
        """``<prefix>/<site>/<line>/<device_id>``."""
        return f"{self.prefix}/{self.site}/{self.line}/{self.device_id}"

    @property
    def prediction(self) -> str:
        return f"{self.base}/prediction"

    @property
    def drift(self) -> str:
        return f"{self.base}/drift"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def metrics(self) -> str:
        return f"{self.base}/metrics"

    def command(self, name: str) -> str:
        """Topic a command ``name`` is received on."""
        if not COMMAND_NAME_RE.match(name):
            raise MessageError(f"command name: expected a lower-case identifier, got {name!r}")
        return f"{self.base}/cmd/{name}"

    def command_response(self, name: str) -> str:
        """Topic the response to command ``name`` is published on."""
        return f"{self.command(name)}/response"

    @property
    def command_filter(self) -> str:
        """Subscription filter matching every command (and no response): ``.../cmd/+``."""
        return f"{self.base}/cmd/+"

    def parse_command(self, topic_name: str) -> str | None:
        """Return the command name of a topic of this device's ``cmd/<name>``, or None for any other topic."""
        head = f"{self.base}/cmd/"
        if not topic_name.startswith(head):
            return None
        name = topic_name[len(head):]
        return name if COMMAND_NAME_RE.match(name) else None

    def group_command_filter(self, group: str) -> str:
        """Subscription filter of the commands sent to deployment group ``group`` (1-4 levels, ``deploy.groups``):
        ``<prefix>/group/<group>/cmd/+``."""
        for level in group.split("/"):
            _check_level("group level", level)
        return f"{self.prefix}/group/{group}/cmd/+"

    def parse_group_command(self, topic_name: str, groups: Iterable[str]) -> tuple[str, str] | None:
        """``(group, command name)`` of a topic ``<prefix>/group/<group>/cmd/<name>`` of one of ``groups``, or None."""
        head = f"{self.prefix}/group/"
        if not topic_name.startswith(head):
            return None
        group, sep, name = topic_name[len(head):].rpartition("/cmd/")
        if not sep or group not in set(groups) or not COMMAND_NAME_RE.match(name):
            return None
        return group, name

    def for_kind(self, kind: MessageKind, command: str | None = None) -> str:
        """Topic of a message kind (``command`` names the command of a COMMAND_RESPONSE)."""
        if kind is MessageKind.COMMAND_RESPONSE:
            if command is None:
                raise MessageError("command_response: expected the command name, got None")
            return self.command_response(command)
        return f"{self.base}/{kind.value}"

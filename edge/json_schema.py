"""Standard JSON Schema (draft 2020-12) files of every payload the daemon publishes, for consumers.

``edge.publish.schema.SCHEMAS`` is the producer's contract, checked by the daemon's own small validator.  This module
writes it as one standard JSON Schema file per payload kind (``schemas/v1/<kind>.schema.json`` in the repository,
regenerated with ``spectro-edge schemas --out schemas/v1``), so a consumer in any language validates what it
receives with an off-the-shelf validator.

The files are the *consumer's* form of each schema: they list every field the producer sends, with its type,
bounds and whether it is required, but allow fields they do not list (``additionalProperties: false`` of the
producer's fixed-field objects is left out), because fields are added within a schema version and an older
consumer must keep accepting a newer producer's payloads (``edge.publish.schema.validate`` without ``strict`` checks the
same).  Maps with free keys (``counters``, ``gauges``, ``latency_ms``) keep their value schema.

>>> doc = consumer_schema("status")
>>> doc["$schema"], doc["$id"], "additionalProperties" in doc
('https://json-schema.org/draft/2020-12/schema', 'spectrolite/status/v1', False)
>>> sorted(render_all())[:2]
['challenger_prediction.schema.json', 'command_response.schema.json']
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge.publish.schema import SCHEMA_VERSION, SCHEMAS

__all__ = ["DRAFT", "DESCRIPTIONS", "consumer_schema", "file_name", "render", "render_all", "write_all"]

#: The JSON Schema dialect of the files.
DRAFT = "https://json-schema.org/draft/2020-12/schema"

#: One sentence per payload kind, the ``description`` of its file (docs/mqtt.md says more).
DESCRIPTIONS: dict[str, str] = {
    "prediction": "One prediction per spectrum on <prefix>/<site>/<line>/<device_id>/prediction; deduplicate on "
                  "(device_id, device_boot_id, seq).",
    "drift": "A drift alert raised or cleared by one detector, on .../drift.",
    "status": "The retained state of a device on .../status: online at connect and on changes, offline as its "
              "last will.",
    "metrics": "Counters (monotonic since the daemon started), gauges and latency percentiles on .../metrics, "
               "every metrics.period_s.",
    "command_response": "The response to a command, on .../cmd/<name>/response.",
    "control": "One measurement of a check standard (measure_control) judged against its known value, on "
               ".../control.",
    "challenger_prediction": "Shadow mode: a challenger bundle's prediction of the spectrum the serving bundle "
                             "predicted on .../prediction (same seq), on .../challenger_prediction.",
    "line_prediction": "Every prediction of one LINE frame (push-broom line) as arrays, one entry per spectrum, on "
                       ".../line_prediction; spectrum i has seq (seq + i) % 2**32; deduplicate per spectrum on "
                       "(device_id, device_boot_id, seq).",
}


def _consumer_form(node: Any) -> Any:
    """``node`` with every ``additionalProperties: false`` removed (recursively); other keys kept in order."""
    if isinstance(node, Mapping):
        return {k: _consumer_form(v) for k, v in node.items() if not (k == "additionalProperties" and v is False)}
    if isinstance(node, (list, tuple)):
        return [_consumer_form(v) for v in node]
    return node


def consumer_schema(kind: str) -> dict[str, Any]:
    """The draft 2020-12 document of payload ``kind`` (a key of ``edge.publish.schema.SCHEMAS``).

    Raises
    ------
    KeyError
        ``kind`` is not a payload kind.
    """
    if kind not in SCHEMAS:
        raise KeyError(f"kind: expected one of {sorted(SCHEMAS)}, got {kind!r}")
    body = _consumer_form(SCHEMAS[kind])
    head = {
        "$schema": DRAFT,
        "$id": body.pop("$id"),
        "title": f"spectrolite {kind} payload, schema_version {SCHEMA_VERSION}",
        "description": DESCRIPTIONS[kind],
        "$comment": "Generated from edge.publish.schema.SCHEMAS by `spectro-edge schemas --out schemas/v1`; "
                    "do not edit. Fields not listed here may appear (they are added within a schema version): "
                    "ignore them.",
    }
    return {**head, **body}


def file_name(kind: str) -> str:
    """``<kind>.schema.json``."""
    return f"{kind}.schema.json"


def render(kind: str) -> str:
    """The exact text of the file of ``kind``: indented JSON, keys in schema order, a final newline."""
    return json.dumps(consumer_schema(kind), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def render_all() -> dict[str, str]:
    """File name -> text, for every payload kind."""
    return {file_name(kind): render(kind) for kind in sorted(SCHEMAS)}


def write_all(out_dir: str | Path) -> list[Path]:
    """Write every file into ``out_dir`` (created if missing) and remove stale ``*.schema.json`` files there;
    return the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = render_all()
    for stale in sorted(out.glob("*.schema.json")):
        if stale.name not in files:
            stale.unlink()
    written = []
    for name, text in files.items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
